"""`accelnn train` and `accelnn predict`: train a network on a CSV file, a .npy/.npz pair or a
built-in data set (see accelnn.tabular), save it, and predict with a saved one.

    accelnn train digits --layers 64 --epochs 30 --validation-split 0.25 --output digits.npz
    accelnn train iris.csv --target species --plot loss.png
    accelnn predict digits.npz new.csv --output predictions.csv

`add_train_parser(subparsers)` / `run_train(args)` and `add_predict_parser(subparsers)` /
`run_predict(args)` plug the two commands into an argparse parser (accelnn.cli). The run_*
functions return the exit status and raise ValueError/TypeError (bad data or options, an
output that cannot be written), BackendError, ImportError (digits without scikit-learn, --plot
without matplotlib) or OSError (e.g. a full disk while writing) for the caller to report.
Outputs are checked before any work: a run never trains and then finds it cannot save.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import os
import sys
import tempfile
import time

import numpy as np

PREDICT_CHUNK = 65536  # rows per forward pass in `predict`


def _hidden_layers(text: str) -> list[int]:
    """"64,32" or "64 32" -> [64, 32]; "" -> [] (no hidden layer)."""
    try:
        sizes = [int(p) for p in text.replace(",", " ").split()]
    except ValueError:
        sizes = [0]
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"expected hidden layer sizes like 64 or 64,32, got "
                                         f"{text!r}")
    return sizes


def _path_or_none(target) -> str | None:
    """--target when it is a file path (a .npy of targets), else None."""
    return target if isinstance(target, str) and os.path.isfile(target) else None


def _column(text: str):
    """A column index when `text` is an integer, else a column name (or a .npy path)."""
    try:
        return int(text)
    except ValueError:
        return text


def _batch_size(text: str):
    if text == "full":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'full', got {text!r}")
    return value


HEADER = {"auto": "auto", "yes": True, "no": False}


def _add_data_arguments(parser, target_help: str) -> None:
    parser.add_argument("--target", type=_column, help=target_help)
    parser.add_argument("--header", choices=list(HEADER), default="auto",
                        help="whether a CSV's first row names the columns (default: auto)")
    parser.add_argument("--delimiter", default=",", help="CSV field separator (default: ,)")
    parser.add_argument("--backend", default=None, help="numpy, numba, cupy or auto")


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add `train` to an argparse subparsers object and return its parser, which rejects
    (argparse's exit status 2) --layers that are not positive integers, a --batch-size other
    than 'full' or an integer >= 1, and unknown --header or --task choices."""
    p = subparsers.add_parser(
        "train", help="train a network on a CSV file, a .npy/.npz pair or a built-in data set",
        description="Train a multi-layer perceptron and save it. DATA is a CSV file, a .npy "
                    "(the target a column of it, or a second .npy given with --target), a "
                    ".npz with arrays X and y, or a built-in data set: flower, spirals, xor, "
                    "digits (digits needs scikit-learn).")
    p.add_argument("data", help="CSV / .npy / .npz path, or flower|spirals|xor|digits")
    _add_data_arguments(p, "target column, by header name or index (default: the last); "
                           "for a .npy, also the path of a .npy of targets; for a .npz, the "
                           "name of the y array (default: y)")
    p.add_argument("--task", choices=["auto", "classify", "regress"], default="auto",
                   help="auto: classify text or whole-number targets, else regress")
    p.add_argument("--layers", type=_hidden_layers, default=[64],
                   help="hidden layer sizes, e.g. 64 or 64,32 (inputs and outputs come from "
                        "the data; default: 64)")
    p.add_argument("--activation", default="relu",
                   help="hidden activation: relu, tanh, sigmoid, leaky_relu, softplus, "
                        "identity (default: relu)")
    p.add_argument("--optimizer", default="adam",
                   help="sgd, momentum, nesterov, adam, adamw, rmsprop (default: adam)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: the optimizer's: 0.1 sgd, 0.001 adam)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=_batch_size, default=32,
                   help="mini-batch size, or 'full' for full-batch gradient descent "
                        "(default: 32)")
    p.add_argument("--validation-split", type=float, default=0.2,
                   help="seeded fraction held out to report validation metrics; 0 trains on "
                        "everything (default: 0.2)")
    p.add_argument("--dtype", default=None, help="float32 or float64")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the weights, the shuffling and the validation split")
    p.add_argument("--output", default="model.npz",
                   help="where to save the model (default: model.npz)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="save the loss (and accuracy) curves here; needs matplotlib")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    return p


def check_outputs(outputs: dict, inputs: dict) -> None:
    """Refuse, before any work, output paths that cannot be written, so that a run does not
    end in an error after training: a path naming a folder, a folder that does not exist or
    cannot be written (a temporary file is created there to find out), two outputs naming
    one file, and an output naming one of the input files (it would be overwritten).
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
        seen[target] = option
        for what, source in inputs.items():
            if source is not None and os.path.isfile(source) and os.path.exists(target) \
                    and os.path.samefile(source, target):
                raise ValueError(f"{option} {path!r} is the {what} file; writing it would "
                                 f"overwrite the input, give another path")


def _task(y: np.ndarray, task: str) -> str:
    if task == "auto":
        return "classify" if y.dtype.kind in "biuUS" else "regress"
    if task == "regress" and y.dtype.kind not in "biuf":
        raise ValueError(f"cannot regress on text targets (dtype {y.dtype}); use --task "
                         f"classify")
    return task


def run_train(args) -> int:
    """Train as `args` says (see add_train_parser), print progress and the final
    train/validation metrics, save the model (and the curves). Rejects, before training:
    an --output or --plot that cannot be written (a folder, a folder that does not exist or
    is not writable, both naming one file, or naming the data), --plot without matplotlib,
    a bad --dtype or ACCELNN_DTYPE, what accelnn.tabular.load_data rejects, fewer than 2
    classes to classify, text targets to regress, and what MLP and MLP.fit reject (layers,
    activation, optimizer, lr, epochs, validation split, backend, dtype)."""
    import accelnn
    from accelnn._data import resolve_dtype
    from accelnn.tabular import load_data

    resolve_dtype(args.dtype)  # a bad --dtype or ACCELNN_DTYPE, before reading any data
    check_outputs({"--output": args.output, "--plot": args.plot},
                   {"DATA": args.data, "--target": _path_or_none(args.target)})
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'accelnn[bench]'")
    X, y = load_data(args.data, "auto" if args.target is None else args.target,
                     header=HEADER[args.header], delimiter=args.delimiter)
    task = _task(y, args.task)
    if task == "classify":
        if y.ndim != 1:
            raise ValueError(f"classification needs one label per sample, got targets of "
                             f"shape {y.shape}")
        n_classes = len(np.unique(y))
        if n_classes < 2:
            raise ValueError(f"{args.data}: the target has {n_classes} class; classification "
                             f"needs at least 2")
        n_out, output = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
        what = f"{n_classes} classes"
    else:
        n_out, output = (1 if y.ndim == 1 else y.shape[1]), "identity"
        what = f"{n_out} target{'s' if n_out > 1 else ''}"
    model = accelnn.MLP([X.shape[1], *args.layers, n_out], args.activation, output,
                        seed=args.seed, dtype=args.dtype, backend=args.backend)
    print(f"{model}\ndata: {args.data}, {X.shape[0]} samples, {X.shape[1]} features, "
          f"{task}, {what}", flush=True)
    verbose = 0 if args.quiet else (1 if sys.stderr.isatty() else 2)
    t0 = time.perf_counter()
    history = model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer=args.optimizer, lr=args.lr,
                        validation_split=args.validation_split,
                        metrics=("accuracy",) if task == "classify" else (), verbose=verbose)
    seconds = time.perf_counter() - t0
    print(f"trained {history.epochs} epochs in {seconds:.2f} s on {model.backend.name}")
    for prefix, label in (("", "train"), ("val_", "validation")):
        if f"{prefix}loss" in history:
            line = f"{label}: loss {history[prefix + 'loss'][-1]:.4f}"
            if f"{prefix}accuracy" in history:
                line += f", accuracy {history[prefix + 'accuracy'][-1]:.2%}"
            print(line)
    model.save(args.output)
    print(f"saved the model to {args.output}")
    if args.plot:
        history.plot(args.plot)
        print(f"saved the curves to {args.plot}")
    return 0


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    """Add `predict` to an argparse subparsers object and return its parser, which rejects
    (exit status 2) a missing MODEL or DATA and an unknown --header choice."""
    p = subparsers.add_parser(
        "predict", help="predict with a saved model",
        description="Write the predictions of a model saved by `accelnn train` (or "
                    "MLP.save) for DATA, one row per sample, as CSV.")
    p.add_argument("model", help="a model file (.npz) saved by accelnn")
    p.add_argument("data", help="CSV / .npy / .npz path, or flower|spirals|xor|digits")
    _add_data_arguments(p, "a target column to leave out of the features (its name or "
                           "index; for a .npz, the y array; auto: the last column, y, or a "
                           "built-in data set's labels); predictions are then scored "
                           "against it on stderr")
    p.add_argument("--output", default=None,
                   help="CSV file to write (default: standard output)")
    return p


def _write_predictions(pred: np.ndarray, out) -> None:
    writer = csv.writer(out, lineterminator="\n")
    cols = pred.reshape(len(pred), -1)
    writer.writerow(["prediction"] if cols.shape[1] == 1 else
                    [f"prediction_{j}" for j in range(cols.shape[1])])
    writer.writerows(cols.tolist())


def _write_text(f, pred: np.ndarray) -> None:
    """The predictions as UTF-8 CSV into the binary file f (left open)."""
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    _write_predictions(pred, text)
    text.flush()
    text.detach()


def run_predict(args) -> int:
    """Write the predictions of args.model for args.data as CSV (header `prediction`, or
    prediction_0.. for several outputs) to args.output or standard output; with --target,
    print the accuracy (classifier) or mean squared error (regressor) to stderr. The file is
    written atomically (accelnn.files.write_atomic). Rejects, before predicting: an --output
    that cannot be written (as `train` does) or that names the model or the data, what
    MLP.load rejects (not a model file, truncated, tampered), what load_data rejects, and
    data with another number of features than the model's inputs."""
    import accelnn
    from accelnn.files import write_atomic
    from accelnn.tabular import load_data

    check_outputs({"--output": args.output},
                   {"MODEL": args.model, "DATA": args.data,
                    "--target": _path_or_none(args.target)})
    model = accelnn.MLP.load(args.model, backend=args.backend)
    X, y = load_data(args.data, args.target, header=HEADER[args.header],
                     delimiter=args.delimiter)
    if X.shape[1] != model.layer_sizes[0]:
        raise ValueError(f"{args.data} has {X.shape[1]} feature columns, but the model "
                         f"{args.model} takes {model.layer_sizes[0]} inputs")
    be = model.backend
    pred = np.concatenate([be.to_numpy(model.predict(X[lo:lo + PREDICT_CHUNK]))
                           for lo in range(0, X.shape[0], PREDICT_CHUNK)])
    if args.output is None:
        _write_predictions(pred, sys.stdout)
    else:
        write_atomic(args.output, lambda f: _write_text(f, pred))
    if y is not None:
        if model.head.name == "identity":
            mse = float(np.mean((pred.reshape(len(y), -1) - y.reshape(len(y), -1)) ** 2))
            print(f"mean squared error {mse:.6g} on {len(y)} samples", file=sys.stderr)
        else:
            print(f"accuracy {np.mean(pred == y):.2%} on {len(y)} samples", file=sys.stderr)
    return 0
