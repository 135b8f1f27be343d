"""`accelnn predict`: a saved model's predictions for a data file, as CSV.

    accelnn predict model.npz new.csv --output predictions.csv
    accelnn predict model.npz test.csv --target species --proba

`add_predict_parser(subparsers)` / `run_predict(args)` plug the command into an argparse
parser (accelnn.cli); run_predict returns the exit status and raises ValueError (bad data,
options or model file, an output that cannot be written), BackendError or OSError for the
caller to report.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import zipfile

import numpy as np

from accelnn.cli_shared import (
    add_data_arguments,
    check_outputs,
    describe,
    path_or_none,
    predict_rows,
    read_args_data,
    score,
)
from accelnn.features import compare_names


def add_predict_parser(subparsers):
    """Add `predict` to an argparse subparsers object and return its parser, which rejects
    (exit status 2) a missing MODEL or DATA and unknown --header or --decimal choices."""
    p = subparsers.add_parser(
        "predict", help="predict with a saved model",
        description="Write the predictions of a model saved by `accelnn train` (or "
                    "MLP.save) for DATA, one row per sample, as CSV; with --target, score "
                    "them (accuracy; or R², mean absolute and mean squared error) on "
                    "stderr. A model saved by `accelnn train` takes raw rows: its "
                    "standardization is folded into its weights.")
    p.add_argument("model", help="a model file (.npz) saved by accelnn train or MLP.save")
    p.add_argument("data", help="CSV / .npy / .npz path, or flower|spirals|xor|digits")
    add_data_arguments(p, "a target column to leave out of the features and score the "
                          "predictions against: its name or index; for a .npz, the y "
                          "array; auto: the last column, y, or a built-in data set's "
                          "labels (default: none, every column is a feature)")
    p.add_argument("--proba", action="store_true",
                   help="also write each class's probability, a column proba_<class> per "
                        "class (classifiers only; default: the predictions only)")
    p.add_argument("--output", default=None,
                   help="CSV file to write (default: standard output)")
    return p


def _is_model_file(path: str) -> bool:
    from accelnn import io as model_io

    if not (os.path.isfile(path) and zipfile.is_zipfile(path)):
        return False
    try:
        model_io.read(path)
    except ValueError:
        return False
    return True


def _load_model(args):
    """MLP.load(args.model), or a ValueError that says what to pass: MODEL first, then DATA."""
    import accelnn

    try:
        return accelnn.MLP.load(args.model, backend=args.backend)
    except ValueError as exc:
        if _is_model_file(args.data):
            raise ValueError(f"{args.model} is not a model file, but {args.data} is: the "
                             f"model comes first, then the data: accelnn predict "
                             f"{args.data} {args.model}") from exc
        if os.path.isfile(args.model) and not zipfile.is_zipfile(args.model):
            raise ValueError(f"{args.model} is not a model file (not a .npz archive): MODEL "
                             f"is the file that `accelnn train --output` writes, and comes "
                             f"before DATA: accelnn predict MODEL DATA") from exc
        raise


def _check_columns(args, table, n_inputs: int) -> None:
    """Refuse data with another number of feature columns than the model's inputs, saying
    what to pass when one column too many is likely the target."""
    n = table.X.shape[1]
    if n == n_inputs:
        return
    hint = ""
    if n == n_inputs + 1 and args.target is None:
        last = table.names[-1] if table.names else n - 1
        hint = (f"; if one of them is the target, pass it to leave it out and score the "
                f"predictions against it, e.g. --target {last} for the last column")
    elif n > n_inputs:
        hint = "; leave out the columns the model was not trained on"
    raise ValueError(f"{args.data} has {n} feature columns, but the model {args.model} "
                     f"takes {n_inputs} inputs{hint}")


def _by_name(args, table, fitted) -> np.ndarray:
    """table.X with its columns in the model's order. When the model knows its features' names
    (a CSV with a header trained it) and the CSV has a header, the columns are matched by
    name: the same names in another order are put in the model's order (said on stderr), and
    other names are refused, naming them; a CSV's columns are never taken by position alone
    when names say otherwise."""
    if fitted is None or table.names is None:
        return table.X
    names, fitted = [str(n) for n in table.names], [str(n) for n in fitted]
    if names != fitted and sorted(names) == sorted(fitted) and len(set(names)) == len(names):
        print(f"{args.data}: columns taken by name, in the order {args.model} was trained "
              f"with", file=sys.stderr)
        return table.X[:, [names.index(n) for n in fitted]]
    compare_names(fitted, names, f"{args.data}: the columns' names")
    return table.X


def as_text(values: np.ndarray) -> list[str]:
    """CSV cells for a 1-D array: floats as the shortest text that reads back as the same
    value of their own dtype (a float32 191.78987, not 191.7898712158203), others as str."""
    if values.dtype.kind == "f":
        return [np.format_float_positional(v, unique=True, trim="0") for v in values]
    return [str(v) for v in values]


def _columns(model, pred: np.ndarray, proba: np.ndarray | None) -> dict[str, list[str]]:
    cols = pred.reshape(len(pred), -1)
    named = {"prediction": as_text(cols[:, 0])} if cols.shape[1] == 1 else \
        {f"prediction_{j}": as_text(cols[:, j]) for j in range(cols.shape[1])}
    if proba is not None:
        classes = model.classes_
        labels = classes if classes is not None and len(classes) == proba.shape[1] \
            else range(proba.shape[1])
        named.update({f"proba_{c}": as_text(proba[:, j]) for j, c in enumerate(labels)})
    return named


def _write_csv(columns: dict[str, list[str]], out) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*columns.values()))


def _write_binary(f, columns: dict[str, list[str]]) -> None:
    """The CSV as UTF-8 into the binary file f (left open)."""
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    _write_csv(columns, text)
    text.flush()
    text.detach()


def run_predict(args) -> int:
    """Write the predictions of args.model for args.data as CSV (header `prediction`, or
    prediction_0.. for several outputs; with --proba, proba_<class> columns) to args.output
    or standard output, then say on stderr what was written where and, with --target, the
    score (accuracy; or R², mean absolute and mean squared error). The file is written
    atomically (accelnn.files.write_atomic). Rejects, before predicting: an --output that
    cannot be written (as `train` does) or that names the model or the data, what MLP.load
    rejects (not a model file -- saying when MODEL and DATA are swapped --, truncated,
    tampered), what load_data rejects, data with another number of feature columns than
    the model's inputs (saying when the target seems to be among them), and --proba for a
    regressor."""
    from accelnn.files import write_atomic

    check_outputs({"--output": args.output},
                  {"MODEL": args.model, "DATA": args.data,
                   "--target": path_or_none(args.target)})
    model = _load_model(args)
    if args.proba and (model.head is None or model.head.name == "identity"):
        raise ValueError(f"--proba needs a classifier; {args.model} has a "
                         f"{model.head.name if model.head else 'unresolved'} output")
    table = read_args_data(args, args.target)
    if describe(args.data, table):
        print(describe(args.data, table), file=sys.stderr)
    _check_columns(args, table, model.layer_sizes[0])
    X = _by_name(args, table, getattr(model, "feature_names_in_", None))
    pred = predict_rows(model, X)
    proba = predict_rows(model, X, proba=True) if args.proba else None
    columns = _columns(model, pred, proba)
    if args.output is None:
        _write_csv(columns, sys.stdout)
        sys.stdout.flush()
    else:
        write_atomic(args.output, lambda f: _write_binary(f, columns))
    what = " and class probabilities" if args.proba else ""
    print(f"wrote {len(pred)} predictions{what} of {args.model} for {args.data} to "
          f"{args.output or 'standard output'}", file=sys.stderr)
    if table.y is not None:
        print(score(model, pred, table.y), file=sys.stderr)
    return 0
