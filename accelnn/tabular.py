"""Training data from files or by name: a CSV file, a .npy/.npz pair, or a built-in data set.
Standard library csv and NumPy only.

    X, y = load_data("iris.csv", target="species")     # CSV, target column by name or index
    X, y = load_data("X.npy", target="y.npy")          # a .npy pair (X stays memory-mapped)
    X, y = load_data("data.npz")                       # arrays "X" and "y"
    X, y = load_data("spirals")                        # flower, spirals, xor, digits
    X, _ = load_data("new.csv", target=None)           # features only, to predict

Every problem in a file is a ValueError naming the file and, for a CSV, the line and column.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile

import numpy as np

from accelnn import datasets
from accelnn._data import find_nonfinite

BUILTIN = {
    "flower": datasets.make_flower,
    "spirals": datasets.make_spirals,
    "xor": datasets.make_xor,
    "digits": datasets.load_digits,
}


def load_data(source, target="auto", *, header="auto", delimiter: str = ","):
    """(X, y) from `source`: X a 2-D array of numbers (float64 from a CSV, as stored in a .npy
    or .npz; the X of a .npy pair stays memory-mapped, so fit can stream it), y the targets
    (numbers, int64 when all are whole numbers, or text labels), or None when `target` is
    None (features only, e.g. for prediction).

    source: an existing file (a .npy, a .npz, anything else is read as CSV), else the name of
        a built-in data set: flower, spirals, xor (seeded) or digits (needs scikit-learn).
    target: the target's column for a CSV or a .npy, by header name or index (negative counts
        from the end); "auto" is the last column. For a .npy it may also be the path of a
        second .npy holding y (the pair). For a .npz, the name of the y array ("auto": "y";
        X is the array "X"). A built-in data set takes only "auto" or None.
    header: True, False or "auto" (CSV only): the first row is a header when some column has
        text there and a number in the second row.
    delimiter: the CSV field separator.

    Rejects (ValueError, naming the file, and for a CSV the line and column): a source that is
    neither a file nor a built-in name, a missing or out-of-range target column, a header
    requested by name in a file without one, ragged rows, empty or non-numeric feature cells,
    NaN or Inf, a file with no data rows or no feature column, an array that is not numeric
    or not 2-D, .npz arrays that are missing, X and y of different lengths, text that is not
    UTF-8. load_data("digits") raises ImportError without scikit-learn.
    """
    if header not in (True, False, "auto"):
        raise ValueError(f"header must be True, False or 'auto', got {header!r}")
    path = os.fspath(source)
    if os.path.isfile(path):
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npy":
            return _load_npy(path, target)
        if ext == ".npz":
            return _load_npz(path, target)
        return _load_csv(path, target, header, delimiter)
    if path in BUILTIN:
        if target not in ("auto", None):
            raise ValueError(f"the built-in data set {path!r} has its own target; leave "
                             f"target unset, got {target!r}")
        X, y = BUILTIN[path]()
        return X, (None if target is None else y)
    raise ValueError(f"{path!r} is neither a file nor a built-in data set "
                     f"({', '.join(BUILTIN)})")


# ---------------------------------------------------------------------- CSV
def _number(cell: str):
    try:
        return float(cell)
    except ValueError:
        return None


def _read_rows(path: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            return [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from exc
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from exc


def _has_header(rows) -> bool:
    first = rows[0][1]
    if len(rows) == 1:
        return all(_number(c) is None for c in first)
    second = rows[1][1]
    return any(_number(a) is None and _number(b) is not None for a, b in zip(first, second))


def _target_index(path: str, target, names: list[str] | None, n_cols: int) -> int:
    if isinstance(target, str) and target != "auto":
        if names is None:
            raise ValueError(f"{path}: no header row, so the target column {target!r} cannot "
                             f"be found by name; give its index")
        if target not in names:
            raise ValueError(f"{path}: no column named {target!r}; the columns are "
                             f"{', '.join(names)}")
        return names.index(target)
    index = -1 if target == "auto" else target
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise ValueError(f"target must be a column name or index, got {target!r}")
    if not -n_cols <= index < n_cols:
        raise ValueError(f"{path}: the target column index {index} is out of range for "
                         f"{n_cols} columns")
    return int(index) % n_cols


def _load_csv(path: str, target, header, delimiter: str):
    rows = _read_rows(path, delimiter)
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    with_header = _has_header(rows) if header == "auto" else header
    names = [c.strip() for c in rows[0][1]] if with_header else None
    data = rows[1:] if with_header else rows
    if not data:
        raise ValueError(f"{path}: no data rows")
    n_cols = len(rows[0][1])
    first_line = rows[0][0]
    for line, row in data:
        if len(row) != n_cols:
            raise ValueError(f"{path}, line {line}: {len(row)} cells, but line {first_line} "
                             f"has {n_cols}")
    t = None if target is None else _target_index(path, target, names, n_cols)
    features = [j for j in range(n_cols) if j != t]
    if not features:
        raise ValueError(f"{path}: no feature columns besides the target")

    def where(line: int, j: int) -> str:
        name = f" ({names[j]!r})" if names else ""
        return f"{path}, line {line}, column {j + 1}{name}"

    X = np.empty((len(data), len(features)))
    for i, (line, row) in enumerate(data):
        for k, j in enumerate(features):
            value = _number(row[j])
            if value is None:
                what = "is empty" if not row[j].strip() else f"{row[j]!r} is not a number"
                raise ValueError(f"{where(line, j)}: {what}")
            if not math.isfinite(value):
                raise ValueError(f"{where(line, j)}: {row[j]!r}: NaN and Inf are not allowed")
            X[i, k] = value
    if t is None:
        return X, None
    cells = [row[t].strip() for _, row in data]
    for (line, _), cell in zip(data, cells):
        if not cell:
            raise ValueError(f"{where(line, t)}: the target is empty")
    values = [_number(c) for c in cells]
    if any(v is None for v in values):
        return X, np.array(cells)
    for (line, row), v in zip(data, values):
        if not math.isfinite(v):
            raise ValueError(f"{where(line, t)}: {row[t]!r}: NaN and Inf are not allowed")
    y = np.array(values)
    return X, (y.astype(np.int64) if np.all(np.mod(y, 1) == 0) else y)


# ---------------------------------------------------------------------- NumPy files
def _checked_array(path: str, name: str, a: np.ndarray, ndims: tuple[int, ...]):
    """`a` if numeric, of an allowed rank and finite (checked a chunk of rows at a time)."""
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {name} holds {a.dtype}, not numbers")
    if a.ndim not in ndims:
        raise ValueError(f"{path}: {name} must be {' or '.join(f'{d}-D' for d in ndims)}, "
                         f"got shape {a.shape}")
    if len(a) == 0:
        raise ValueError(f"{path}: {name} has no rows")
    at = find_nonfinite(a)
    if at is not None:
        cell = f"row {at[0]}" + (f", column {at[1]}" if a.ndim == 2 else "")
        raise ValueError(f"{path}: {name} has NaN or Inf at {cell} (from 0)")
    return a


def _pair(path_x: str, X, path_y: str, y):
    if y is not None and len(y) != len(X):
        raise ValueError(f"X ({path_x}) has {len(X)} rows but y ({path_y}) has {len(y)}")
    return X, y


def _load_npy(path: str, target):
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a readable .npy file ({exc})") from exc
    if isinstance(target, str) and target != "auto":
        X = _checked_array(path, "X", arr, (2,))
        y = _load_npy_target(target)
        return _pair(path, X, target, y)
    arr = _checked_array(path, "the array", arr, (2,))
    if target is None:
        return arr, None
    t = _target_index(path, target, None, arr.shape[1])
    if arr.shape[1] < 2:
        raise ValueError(f"{path}: no feature columns besides the target")
    y = np.array(arr[:, t])
    X = np.delete(arr, t, axis=1).astype(np.float64)
    return X, (y.astype(np.int64) if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0) else y)


def _load_npy_target(path: str):
    if not os.path.isfile(path):
        raise ValueError(f"the target {path!r} is not a file (a .npy of targets) and a "
                         f".npy has no column names")
    try:
        y = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a readable .npy file ({exc})") from exc
    if y.dtype.kind in "US":
        if y.ndim != 1:
            raise ValueError(f"{path}: text labels must be 1-D, got shape {y.shape}")
        return y
    return _checked_array(path, "y", y, (1, 2))


def _load_npz(path: str, target):
    y_key = "y" if target == "auto" else target
    if y_key is not None and not isinstance(y_key, str):
        raise ValueError(f"{path}: the target of a .npz is the name of its y array, got "
                         f"{target!r}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single array, not a .npz archive of X and y")
    with data:
        missing = [k for k in ("X", y_key) if k is not None and k not in data.files]
        if missing:
            raise ValueError(f"{path}: no array named {', '.join(map(repr, missing))}; it "
                             f"holds {', '.join(data.files) or 'nothing'}")
        try:
            X = data["X"]
            y = None if y_key is None else data[y_key]
        except ValueError as exc:
            raise ValueError(f"{path}: unreadable array ({exc})") from exc
    X = _checked_array(path, "X", X, (2,))
    if y is not None and y.dtype.kind not in "US":
        y = _checked_array(path, y_key, y, (1, 2))
    return _pair(path, X, path, y)
