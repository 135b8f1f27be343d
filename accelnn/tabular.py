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
    or .npz; the X of a .npy pair stays memory-mapped, so fit can stream it), y the targets,
    or None when `target` is None (features only, e.g. for prediction). Targets from a CSV
    or a .npy column are text labels, or int64 when all are whole numbers within int64
    (integer cells are read exactly, not through a float), else float64; a .npz or a .npy of
    targets gives them as stored.

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
    NaN, Inf or numbers beyond float64, an integer CSV target beyond int64 that float64
    cannot hold exactly, a file with no data rows or no feature column, an array that is not
    numeric or not 2-D, .npz arrays that are missing, X and y of different lengths, text that
    is not UTF-8. load_data("digits") raises ImportError without scikit-learn.
    """
    if not (header is True or header is False or _is_auto(header)):
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
        if not (target is None or _is_auto(target)):
            raise ValueError(f"the built-in data set {path!r} has its own target; leave "
                             f"target unset, got {target!r}")
        X, y = BUILTIN[path]()
        return X, (None if target is None else y)
    raise ValueError(f"{path!r} is neither a file nor a built-in data set "
                     f"({', '.join(BUILTIN)})")


def _is_auto(value) -> bool:
    """value is the string "auto" (never an `==` that an array or a number answers)."""
    return isinstance(value, str) and value == "auto"


INT64 = np.iinfo(np.int64)


def _whole_targets(y: np.ndarray):
    """Float targets that are all whole numbers within int64 as int64 (exact); else `y`."""
    if y.dtype.kind != "f":
        return y
    with np.errstate(invalid="ignore"):
        whole = bool(np.all(np.mod(y, 1) == 0))
    # -2**63 and 2**63 are exact floats: every whole float in [-2**63, 2**63) casts exactly
    if whole and y.size and float(y.min()) >= INT64.min and float(y.max()) < 2.0 ** 63:
        return y.astype(np.int64)
    return y


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
    if isinstance(target, str) and not _is_auto(target):
        if names is None:
            raise ValueError(f"{path}: no header row, so the target column {target!r} cannot "
                             f"be found by name; give its index")
        if target not in names:
            raise ValueError(f"{path}: no column named {target!r}; the columns are "
                             f"{', '.join(names)}")
        return names.index(target)
    index = -1 if _is_auto(target) else target
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
    with_header = _has_header(rows) if _is_auto(header) else header
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
                raise ValueError(f"{where(line, j)}: {_nonfinite(row[j])}")
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
            raise ValueError(f"{where(line, t)}: {_nonfinite(row[t])}")
    return X, _csv_targets(cells, values, [where(line, t) for line, _ in data])


def _nonfinite(cell: str) -> str:
    """Why a cell that reads as NaN or +-Inf is refused."""
    if cell.strip().lstrip("+-").lower() in ("nan", "inf", "infinity"):
        return f"{cell!r}: NaN and Inf are not allowed"
    return f"{cell!r} is beyond the float64 range (about 1.8e308)"


def _csv_targets(cells: list[str], values: list[float], where: list[str]) -> np.ndarray:
    """Numeric targets as the file holds them: int64 when every one is a whole number within
    int64 (an integer cell is read exactly, not through a float), else float64. An integer
    cell beyond int64 that float64 cannot hold exactly is refused: it would reach the model
    as another number (and two such labels could become one)."""
    ints = []
    for cell, v, at in zip(cells, values, where):
        if v != math.floor(v):
            ints = None
            continue
        try:
            exact = int(cell)  # an integer cell, read exactly
        except ValueError:
            exact = int(v)  # "3.0", "1e20": the float's own value
        if float(exact) != exact and not INT64.min <= exact <= INT64.max:
            raise ValueError(f"{at}: the target {cell} is a whole number beyond int64 that "
                             f"float64 cannot hold exactly (it would be read as "
                             f"{float(exact)!r}); store it as text to use it as a label, or "
                             f"scale it")
        if ints is not None:
            ints.append(exact)
    if ints is not None and all(INT64.min <= i <= INT64.max for i in ints):
        return np.array(ints, dtype=np.int64)
    return np.array(values, dtype=np.float64)


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
    if isinstance(target, str) and not _is_auto(target):
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
    return X, _whole_targets(y)


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
    y_key = "y" if _is_auto(target) else target
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
