"""Input checking and conversion, done once per call before anything in a model changes."""

from __future__ import annotations

import os

import numpy as np

DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def resolve_dtype(dtype=None) -> np.dtype:
    """The model float: `dtype` when given, else ACCELNN_DTYPE, else float32.

    Accepts what NumPy reads as float32 or float64 in native byte order ("float32",
    np.float64, "f8", ...). Anything else, a value NumPy cannot read as a dtype included
    ("bogus", 5), is a ValueError naming it and where it came from. (np.dtype("float64") ==
    None is True in NumPy, so a dtype is never compared with anything but a dtype here.)"""
    source = ""
    if dtype is None:
        dtype, source = os.environ.get("ACCELNN_DTYPE") or "float32", " (from ACCELNN_DTYPE)"
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    if not isinstance(dt, np.dtype) or not any(dt == known for known in DTYPES.values()):
        raise ValueError(f"unsupported dtype {dtype!r}{source}; choose float32 or float64")
    return dt


def _dtype_kind(a) -> str:
    return np.dtype(a.dtype).kind


def _is_missing(v) -> bool:
    """v is a missing value: None, a float NaN, or pandas' NA / NaT."""
    if v is None or type(v).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(v, (float, np.floating)) and v != v


def position(index: tuple[int, ...]) -> str:
    """'row 3' or 'row 3, column 1' (from 0)."""
    where = f"row {index[0]}" if index else "the value"
    return where + "".join(f", {'column' if k == 1 else f'axis {k}'} {i}"
                           for k, i in enumerate(index[1:], start=1))


def _count(shape: tuple[int, ...]) -> str:
    if not shape:
        return "a single value"
    return f"{shape[0]} value{'s' if shape[0] != 1 else ''}" if len(shape) == 1 \
        else f"shape {shape}"


def _ragged(x, depth: int = 0) -> str | None:
    """Where the nested sequence x is ragged: 'row 1 has 2 values, but row 0 has 3 values'
    (inside a row: 'in row 4, column 1 has ...')."""
    if isinstance(x, (str, bytes)) or not hasattr(x, "__iter__"):
        return None
    part = ("row", "column")[depth] if depth < 2 else "element"
    first = None
    for i, item in enumerate(x):
        try:
            shape = np.shape(item)
        except ValueError:  # ragged inside this item
            inner = _ragged(item, depth + 1)
            return f"in {part} {i}, {inner}" if inner else f"{part} {i} is ragged"
        if first is None:
            first = shape
        elif shape != first:
            return f"{part} {i} has {_count(shape)}, but {part} 0 has {_count(first)}"
    return None


def _as_array(x, name: str) -> np.ndarray:
    """np.asarray(x); a ragged nested sequence is a ValueError saying where."""
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        where = _ragged(x) if isinstance(exc, ValueError) else None
        if where:
            raise ValueError(f"{name} is ragged: {where}; every row needs the same number "
                             f"of values") from exc
        raise TypeError(f"{name} could not be read as an array: {exc}") from exc


def check_missing(a: np.ndarray, name: str) -> None:
    """An object array holding a missing value (None, NaN, pandas' NA) is a ValueError naming
    its position; the first one is reported."""
    if a.dtype.kind != "O" or a.size == 0:
        return
    missing = np.asarray(np.frompyfunc(_is_missing, 1, 1)(a), dtype=bool)
    if missing.any():
        index = tuple(int(i) for i in np.argwhere(missing)[0])
        raise ValueError(f"{name} has a missing value ({a[index]!r}) at {position(index)}; give "
                         f"every sample a value, or drop the samples without one")


def host_array(x, name: str) -> np.ndarray:
    """A NumPy view or copy of anything array-like: lists, __array__, __dlpack__ producers
    (a device array is copied to the host), or a backend array. Rejects a ragged nested list
    (ValueError naming the row) and objects holding a missing value, None or NaN (ValueError
    naming the row and column)."""
    if x is None:
        raise TypeError(f"{name} is None; give an array")
    if isinstance(x, np.ndarray):
        a = x
    elif hasattr(x, "get") and hasattr(x, "__cuda_array_interface__"):  # a CuPy array
        return x.get()
    elif hasattr(x, "__dlpack__") and not hasattr(x, "__array__"):
        return np.from_dlpack(x)
    else:
        a = _as_array(x, name)
    check_missing(a, name)
    return a


def _check_layout(X, n_features: int) -> None:
    if _dtype_kind(X) not in "biuf":
        if _dtype_kind(X) == "O":
            check_missing(X, "X")
            at = next((i for i, v in np.ndenumerate(X)
                       if not isinstance(v, (bool, int, float, np.bool_, np.integer,
                                             np.floating))), None)
            if at is not None:
                raise TypeError(f"X must hold numbers (bool, int or float), got {X[at]!r} at "
                                f"{position(at)} (dtype object)")
        raise TypeError(f"X must hold numbers (bool, int or float), got dtype {X.dtype}")
    if X.ndim != 2:
        hint = (" Use X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single "
                "sample." if X.ndim == 1 else "")
        raise ValueError(f"X must be 2-D (samples, features), got shape {X.shape}.{hint}")
    if X.shape[0] == 0:
        raise ValueError("X is empty: it has 0 samples")
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but the model's input layer has "
                         f"{n_features}")


def check_X(backend, X, dtype, n_features: int, finite: bool = True):
    """Validate features and return them as a C-contiguous backend array of `dtype`.

    Rejects: anything that is not a 2-D array of numbers (bool, int or float; complex, text and
    objects are refused), a ragged nested list, an empty array, a wrong number of columns,
    NaN, Inf, None or values too large for `dtype` (the message names the first one's row and
    column). Host data is checked and cast on the host, then moved once. finite=False leaves
    NaN, Inf and values too large (Inf after the cast) to a caller that finds them more
    cheaply, and calls this again to name them."""
    if isinstance(X, (list, tuple)):
        X = _as_array(X, "X")
    if not isinstance(X, (np.ndarray, backend.xp.ndarray)):
        try:
            X = backend.asarray(X)  # __dlpack__ / __array__ producers
        except (TypeError, ValueError):
            X = host_array(X, "X")  # e.g. a GPU array for a CPU backend: copied to the host
    _check_layout(X, n_features)
    host = X
    if isinstance(X, np.ndarray):
        with np.errstate(over="ignore"):  # values too large for dtype are reported below
            X = np.ascontiguousarray(X, dtype=dtype)
    arr = backend.asarray(X, dtype)
    if finite and not backend.all_finite(arr):
        if not isinstance(host, np.ndarray):
            host = backend.to_numpy(host)  # a device array: found on the host, once
        at = find_nonfinite(host)
        if at is None:  # finite as given: too large for dtype
            dt = np.dtype(dtype)
            at = find_nonfinite(host, np.finfo(dt).max)
            value = "" if at is None else f": {host[at].item()!r}"
            where = "" if at is None else f" ({position(at)}{value})"
            raise ValueError(f"X has values too large for {dt.name}{where}")
        raise ValueError(f"X contains NaN or Inf ({position(at)}: {host[at].item()!r})")
    return arr


def find_nonfinite(a: np.ndarray, limit: float = np.inf,
                   chunk_rows: int = 65536) -> tuple[int, ...] | None:
    """The index of the first NaN, Inf or value beyond +-limit in `a`, or None; read a chunk
    of rows at a time, so a memory-mapped file is checked without being loaded whole."""
    if a.dtype.kind != "f":
        return None
    for lo in range(0, len(a), chunk_rows):
        chunk = a[lo:lo + chunk_rows]
        bad = ~(np.abs(chunk) <= limit) if limit < np.inf else ~np.isfinite(chunk)
        if bad.any():
            at = np.argwhere(bad)[0]
            return (lo + int(at[0]), *(int(i) for i in at[1:]))
    return None


def check_host_X(X: np.ndarray, n_features: int, dtype) -> np.ndarray:
    """Validate a host array (a memory-mapped file) a chunk of rows at a time, without
    loading or copying it whole; returns it unchanged. Rejects what check_X rejects, values
    too large for the model `dtype` included."""
    _check_layout(X, n_features)
    dtype = np.dtype(dtype)
    limit = np.finfo(dtype).max if X.dtype.itemsize > dtype.itemsize else np.inf
    at = find_nonfinite(X, limit)
    if at is not None:
        value = X[at]
        what = "NaN or Inf" if not np.isfinite(value) else f"values too large for {dtype.name}"
        raise ValueError(f"X contains {what} (row {at[0]}, column {at[1]})")
    return X
