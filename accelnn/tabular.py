"""Training data from files or by name: a CSV file, a .npy/.npz pair, or a built-in data set.

    X, y = load_data("iris.csv", target="species")     # CSV, target column by name or index
    X, y = load_data("X.npy", target="y.npy")          # a .npy pair (X stays memory-mapped)
    X, y = load_data("data.npz")                       # arrays "X" and "y"
    X, y = load_data("spirals")                        # flower, spirals, xor, digits
    X, _ = load_data("new.csv", target=None)           # features only, to predict
    table = read_table("wine.csv")                     # X, y, names, notes: how it was read

CSV files are read by accelnn.csvfile (delimiter, decimal mark and header detected). Every
problem in a file is a ValueError naming the file and, for a CSV, the line and column.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from accelnn import datasets
from accelnn._data import find_nonfinite
from accelnn.csvfile import Table, column_index, is_auto, read_csv, whole_targets

BUILTIN = {
    "flower": datasets.make_flower,
    "spirals": datasets.make_spirals,
    "xor": datasets.make_xor,
    "digits": datasets.load_digits,
}


def load_data(source, target="auto", *, header="auto", delimiter: str = "auto",
              decimal: str = "auto"):
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
    header: True, False or "auto" (CSV only; see accelnn.csvfile for the rule).
    delimiter: the CSV field separator, or "auto" (detected with csv.Sniffer).
    decimal: the CSV decimal mark, ".", "," or "auto" (',' when the cells show it).

    Rejects (ValueError, naming the file, and for a CSV the line and column): a source that is
    neither a file nor a built-in name, a missing or out-of-range target column, a header
    requested by name in a file without one, ragged rows, empty or non-numeric feature cells
    (saying when a decimal comma or a thousands separator is the cause), NaN, Inf or numbers
    beyond float64, an integer CSV target beyond int64 that float64 cannot hold exactly, a
    file with no data rows or no feature column, an array that is not numeric or not 2-D,
    .npz arrays that are missing, X and y of different lengths, text that is not UTF-8.
    load_data("digits") raises ImportError without scikit-learn.
    """
    table = read_table(source, target, header=header, delimiter=delimiter, decimal=decimal)
    return table.X, table.y


def read_table(source, target="auto", *, header="auto", delimiter: str = "auto",
               decimal: str = "auto") -> Table:
    """What load_data reads (same arguments, same refusals), as a Table: X, y, the feature
    names (a CSV file's header, else None) and notes on how a CSV file was read (delimiter,
    decimal mark, header and why; empty for other sources)."""
    if not (header is True or header is False or is_auto(header)):
        raise ValueError(f"header must be True, False or 'auto', got {header!r}")
    path = os.fspath(source)
    if os.path.isfile(path):
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npy":
            return Table(*_load_npy(path, target), None)
        if ext == ".npz":
            return Table(*_load_npz(path, target), None)
        return read_csv(path, target, header, delimiter, decimal)
    check_source(path)
    if not (target is None or is_auto(target)):
        raise ValueError(f"the built-in data set {path!r} has its own target; leave "
                         f"target unset, got {target!r}")
    X, y = BUILTIN[path]()
    return Table(X, None if target is None else y, None)


def check_source(source) -> None:
    """ValueError unless `source` is a file or the name of a built-in data set: what the
    command line checks before anything else."""
    path = os.fspath(source)
    if not (os.path.isfile(path) or path in BUILTIN):
        raise ValueError(f"{path!r} is neither a file nor a built-in data set "
                         f"({', '.join(BUILTIN)})")


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
    if isinstance(target, str) and not is_auto(target):
        X = _checked_array(path, "X", arr, (2,))
        y = _load_npy_target(target)
        return _pair(path, X, target, y)
    arr = _checked_array(path, "the array", arr, (2,))
    if target is None:
        return arr, None
    t = column_index(path, target, None, arr.shape[1])
    if arr.shape[1] < 2:
        raise ValueError(f"{path}: no feature columns besides the target")
    y = np.array(arr[:, t])
    X = np.delete(arr, t, axis=1).astype(np.float64)
    return X, whole_targets(y)


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
    y_key = "y" if is_auto(target) else target
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
