"""What `accelnn train` and `accelnn predict` share: the data options and reading, the check
of output paths (also used by `accelnn bench`), predicting a chunk of rows at a time, and
the scores of predictions against targets."""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

PREDICT_CHUNK = 65536  # rows per forward pass
HEADER = {"auto": "auto", "yes": True, "no": False}


def column(text: str):
    """A column index when `text` is an integer, else a column name (or a .npy path)."""
    try:
        return int(text)
    except ValueError:
        return text


def path_or_none(target) -> str | None:
    """--target when it is a file path (a .npy of targets), else None."""
    return target if isinstance(target, str) and os.path.isfile(target) else None


def add_data_arguments(parser, target_help: str) -> None:
    """--target (help: target_help), --header, --delimiter, --decimal and --backend."""
    parser.add_argument("--target", type=column, help=target_help)
    parser.add_argument("--header", choices=list(HEADER), default="auto",
                        help="whether a CSV file's first row names the columns; auto: yes "
                             "when its cells differ in kind (text, number) from the rows "
                             "below, or are pandas' 0,1,2,... (default: %(default)s)")
    parser.add_argument("--delimiter", default="auto",
                        help="CSV field separator, e.g. ';' or $'\\t'; auto: detected with "
                             "csv.Sniffer among ; tab | , (default: %(default)s)")
    parser.add_argument("--decimal", choices=["auto", ".", ","], default="auto",
                        help="CSV decimal mark; auto: ',' when the delimiter is not ',' and "
                             "the cells show decimal commas (default: %(default)s)")
    parser.add_argument("--backend", default=None,
                        help="numpy, numba, cupy or auto (default: ACCELNN_BACKEND, else "
                             "auto: the fastest available)")


def read_args_data(args, target):
    """The accelnn.tabular.Table that args.data, --header, --delimiter and --decimal give,
    with `target` as the target column (None: features only)."""
    from accelnn.tabular import read_table

    return read_table(args.data, target, header=HEADER[args.header],
                      delimiter=args.delimiter, decimal=args.decimal)


def describe(source: str, table) -> str | None:
    """One line on how a CSV file was read (None for other sources)."""
    return f"read {source}: {'; '.join(table.notes)}" if table.notes else None


def check_outputs(outputs: dict, inputs: dict) -> None:
    """Refuse, before any work, output paths that cannot be written, so that a run does not
    end in an error after training: a path naming a folder, a folder that does not exist or
    cannot be written (a temporary file is created there to find out), an existing path that
    is not a regular file (/dev/null, a pipe: the atomic write would replace it), two outputs
    naming one file, and an output naming one of the input files (it would be overwritten).
    `outputs` and `inputs` map an option (e.g. "--output", "DATA") to a path or None."""
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        target = os.path.realpath(path)  # a link is followed when the file is written
        if not path or os.path.isdir(target) or path.endswith(("/", os.sep)):
            raise ValueError(f"{option} {path!r} names a folder; give a file path, e.g. "
                             f"{os.path.join(path or '.', 'model.npz')}")
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            if os.path.exists(folder):
                raise ValueError(f"{option} {path!r}: {folder!r} is not a folder; give "
                                 f"another path")
            raise ValueError(f"{option} {path!r}: the folder {folder!r} does not exist; "
                             f"create it or give another path")
        try:  # a nameless (or at once unlinked) file: nothing is left behind
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            raise ValueError(f"{option} {path!r}: cannot write in the folder {folder!r} "
                             f"({exc.strerror})") from exc
        if target in seen:
            raise ValueError(f"{option} and {seen[target]} name the same file {path!r}; give "
                             f"each its own")
        if os.path.exists(target) and not os.path.isfile(target):
            raise ValueError(f"{option} {path!r} exists and is not a regular file (a device, "
                             f"a pipe or a socket); the file is written beside it and renamed "
                             f"over it, which would replace it: give a file path")
        seen[target] = option
        for what, source in inputs.items():
            if source is not None and os.path.isfile(source) and os.path.exists(target) \
                    and os.path.samefile(source, target):
                raise ValueError(f"{option} {path!r} is the {what} file; writing it would "
                                 f"overwrite the input, give another path")


def predict_rows(model, X, rows: np.ndarray | None = None, proba: bool = False) -> np.ndarray:
    """model.predict (or predict_proba) of X, or of X[rows], as a NumPy array, PREDICT_CHUNK
    rows at a time (X may be memory-mapped)."""
    run = model.predict_proba if proba else model.predict
    n = X.shape[0] if rows is None else len(rows)
    parts = (X[lo:lo + PREDICT_CHUNK] if rows is None else X[rows[lo:lo + PREDICT_CHUNK]]
             for lo in range(0, n, PREDICT_CHUNK))  # read one chunk at a time
    return np.concatenate([model.backend.to_numpy(run(part)) for part in parts])


def score(model, pred: np.ndarray, y: np.ndarray) -> str:
    """The predictions' score against the targets y, as text: a classifier's accuracy; a
    regressor's R^2 (the mean over its outputs, as scikit-learn's r2_score), mean absolute
    error and mean squared error, in the targets' own units."""
    n = len(y)
    if model.head.name != "identity":
        return f"accuracy {np.mean(pred.reshape(y.shape) == y):.2%} on {n} samples"
    P = pred.reshape(n, -1).astype(np.float64)
    Y = np.asarray(y, dtype=np.float64).reshape(n, -1)
    err = P - Y
    total = np.sum((Y - Y.mean(axis=0)) ** 2, axis=0)
    if np.all(total > 0):
        r2 = f"R² {np.mean(1.0 - np.sum(err ** 2, axis=0) / total):.4f}"
    else:
        r2 = "R² undefined (constant targets)"
    return (f"{r2}, mean absolute error {np.mean(np.abs(err)):.6g}, mean squared error "
            f"{np.mean(err ** 2):.6g} on {n} samples")


@contextlib.contextmanager
def numba_compiles():
    """Count numba's compilations inside the block: yields a callable giving the count so far
    (0 without numba). A first run on a machine compiles the numba backend's kernels (seconds),
    and later runs load them from numba's cache, which is no compilation."""
    try:
        from numba.core import event
    except ImportError:
        yield lambda: 0
        return
    with event.install_recorder("numba:compile") as recorder:
        yield lambda: sum(1 for _, ev in recorder.buffer if ev.is_start)
