"""`accelnn train`: train a network on a CSV file, a .npy/.npz pair or a built-in data set
(see accelnn.tabular), report how it went and save it.

    accelnn train digits --layers 64 --epochs 30 --validation-split 0.25 --output digits.npz
    accelnn train iris.csv --target species --plot loss.png

`add_train_parser(subparsers)` / `run_train(args)` plug the command into an argparse parser
(accelnn.cli). run_train returns the exit status and raises ValueError/TypeError (bad data or
options, an output that cannot be written or exists without --force), BackendError,
ImportError (digits without scikit-learn, --plot without matplotlib) or OSError (e.g. a full
disk while writing) for the caller to report. Outputs are checked before any work: a run
never trains and then finds it cannot save.

A run: read the data (saying how a CSV file was read); choose the task (choose_task, saying
why); hold out the validation rows (seeded); standardize the features, and a regressor's
targets, with the statistics of the training rows (accelnn.scaling); train; fold the
standardization into the network, so that the saved model takes raw rows; score the training
and validation rows with the saved model; save it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time

import numpy as np

from accelnn.cli_shared import (
    add_data_arguments,
    check_outputs,
    describe,
    numba_compiles,
    path_or_none,
    predict_rows,
    read_args_data,
    score,
)

MAX_CLASSES = 20  # whole-number targets with at most this many distinct values are classes,
CLASS_SHARE = 0.05  # and so are those with at most this share of the rows as distinct values
CHUNK = 65536  # rows per pass when a memory-mapped X is copied


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


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"--seed must be an integer >= 0, got {text!r}")
    return value


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add `train` to an argparse subparsers object and return its parser, which rejects
    (argparse's exit status 2) --layers that are not positive integers, a --batch-size other
    than 'full' or an integer >= 1, and unknown --header, --decimal or --task choices."""
    p = subparsers.add_parser(
        "train", help="train a network on a CSV file, a .npy/.npz pair or a built-in data set",
        description="Train a multi-layer perceptron and save it. DATA is a CSV file, a .npy "
                    "(the target a column of it, or a second .npy given with --target), a "
                    ".npz with arrays X and y, or a built-in data set: flower, spirals, xor, "
                    "digits (digits needs scikit-learn). The features are standardized with "
                    "the training rows' mean and standard deviation, and the scaling is "
                    "folded into the saved network, which takes raw rows.")
    p.add_argument("data", help="CSV / .npy / .npz path, or flower|spirals|xor|digits")
    add_data_arguments(p, "target column, by header name or index; for a .npy, also the "
                          "path of a .npy of targets; for a .npz, the name of the y array "
                          "(default: the last column; y for a .npz)")
    p.add_argument("--task", choices=["auto", "classify", "regress"], default="auto",
                   help=f"auto: text targets are classes; whole numbers are classes when "
                        f"there are at most {MAX_CLASSES} distinct ones, or at most as many "
                        f"as {CLASS_SHARE:.0%}% of the rows, else values to regress on; "
                        f"fractions are values (default: %(default)s)")
    p.add_argument("--layers", type=_hidden_layers, default=[64],
                   help="hidden layer sizes, e.g. 64 or 64,32 (inputs and outputs come from "
                        "the data; default: 64)")
    p.add_argument("--activation", default="relu",
                   help="hidden activation: relu, tanh, sigmoid, leaky_relu, softplus, "
                        "identity (default: %(default)s)")
    p.add_argument("--optimizer", default="adam",
                   help="sgd, momentum, nesterov, adam, adamw, rmsprop (default: "
                        "%(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: the optimizer's: 0.1 sgd, 0.001 adam)")
    p.add_argument("--epochs", type=int, default=30,
                   help="passes over the training rows (default: %(default)s)")
    p.add_argument("--batch-size", type=_batch_size, default=32,
                   help="mini-batch size, or 'full' for full-batch gradient descent "
                        "(default: %(default)s)")
    p.add_argument("--validation-split", type=float, default=0.2,
                   help="seeded fraction of the rows held out to report validation scores; "
                        "0 trains on every row (default: %(default)s)")
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="train on the features (and regression targets) as they are "
                        "(default: standardize them)")
    p.add_argument("--dtype", default=None,
                   help="float32 or float64 (default: ACCELNN_DTYPE, else float32)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seeds the weights, the shuffling and the validation split "
                        "(default: %(default)s)")
    p.add_argument("--output", default="model.npz",
                   help="where to save the model (default: %(default)s)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="save the loss (and accuracy) curves here; needs matplotlib "
                        "(default: no plot)")
    p.add_argument("--force", action="store_true",
                   help="overwrite --output and --plot when they exist (default: refuse)")
    p.add_argument("--quiet", action="store_true",
                   help="no per-epoch progress (default: a line per epoch, or a bar on a "
                        "terminal)")
    return p


def refuse_existing(outputs: dict, force: bool) -> None:
    """Refuse outputs that exist unless `force`: a model (the default model.npz included)
    is never overwritten by the next run without being asked to."""
    for option, path in outputs.items():
        if path is not None and os.path.lexists(path) and not force:
            raise ValueError(f"{option} {path!r} exists; pass --force to overwrite it, or "
                             f"give another path")


def choose_task(y: np.ndarray, task: str) -> tuple[str, str]:
    """(task, why): "classify" or "regress" for the targets y, as --task says or, for
    "auto", by the rule in --task's help. Refuses text targets to regress and targets that
    are not one label per sample to classify."""
    from accelnn.targets import integral

    if task == "regress" and y.dtype.kind not in "biuf":
        raise ValueError(f"cannot regress on text targets (dtype {y.dtype}); use --task "
                         f"classify")
    if task == "classify" and y.ndim != 1:
        raise ValueError(f"classification needs one label per sample, got targets of "
                         f"shape {y.shape}")
    if task != "auto":
        return task, "as --task says"
    if y.ndim != 1:
        return "regress", f"{y.shape[1]} target columns"
    if y.dtype.kind not in "biuf":
        return "classify", "the targets are text labels"
    if not integral(y):
        return "regress", "the targets have fractions (--task classify to take them as labels)"
    n, m = len(np.unique(y)), len(y)
    counts = f"{n} distinct whole numbers in {m} rows"
    if n <= MAX_CLASSES or n <= CLASS_SHARE * m:
        return "classify", (f"{counts}: at most {MAX_CLASSES}, or at most {CLASS_SHARE:.0%} "
                            f"of the rows, are classes (--task regress to fit them as values)")
    return "regress", (f"{counts}: more than {MAX_CLASSES} and more than {CLASS_SHARE:.0%} "
                       f"of the rows are values (--task classify to take them as classes)")


def split_rows(m: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows), sorted: a seeded `fraction` of the m rows held out
    (at least one when fraction > 0). Refuses a fraction outside [0, 1) or one that leaves
    no row to train on."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--validation-split must be a number in [0, 1), got {fraction}")
    n_val = max(1, int(round(m * fraction))) if fraction else 0
    if n_val >= m:
        raise ValueError(f"--validation-split {fraction} holds out {n_val} of {m} rows, "
                         f"leaving none to train on")
    perm = np.random.default_rng(seed).permutation(m)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _rows_for_fit(X, rows: np.ndarray, scaler, dtype, folder: str | None):
    """X[rows] as fit takes it, standardized when there is a scaler. A memory-mapped X given
    a folder stays out of memory: all of it as it is, or its rows, a chunk at a time, in a
    memory-mapped temporary .npy in that folder, so that fit streams it."""
    if folder is None or not isinstance(X, np.memmap):
        part = np.asarray(X[rows])
        return part if scaler is None else scaler.features(part)
    if scaler is None and len(rows) == X.shape[0]:
        return X
    out = np.lib.format.open_memmap(os.path.join(folder, "rows.npy"), mode="w+",
                                    dtype=dtype, shape=(len(rows), X.shape[1]))
    for lo in range(0, len(rows), CHUNK):
        chunk = X[rows[lo:lo + CHUNK]]
        out[lo:lo + CHUNK] = chunk if scaler is None else scaler.features(chunk)
    out.flush()
    return out


def run_train(args) -> int:
    """Train as `args` says (see add_train_parser and the module docstring), print what was
    read and chosen, the progress and the final train/validation scores, save the model
    (and the curves). Rejects, before training: an --output or --plot that cannot be written
    (a folder, a folder that does not exist or is not writable, both naming one file, or
    naming the data) or that exists without --force, --plot without matplotlib, a bad
    --dtype or ACCELNN_DTYPE, what accelnn.tabular.load_data rejects, fewer than 2 classes
    to classify, text targets to regress, a --validation-split outside [0, 1), and what MLP
    and MLP.fit reject (layers, activation, optimizer, lr, epochs, backend, dtype)."""
    import accelnn
    from accelnn._data import resolve_dtype
    from accelnn.scaling import Standardizer
    from accelnn.tabular import check_source

    dtype = resolve_dtype(args.dtype)  # a bad --dtype or ACCELNN_DTYPE, before any reading
    check_source(args.data)  # a missing DATA first: --force would not help there
    outputs = {"--output": args.output, "--plot": args.plot}
    check_outputs(outputs, {"DATA": args.data, "--target": path_or_none(args.target)})
    refuse_existing(outputs, args.force)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'accelnn[bench]'")
    table = read_args_data(args, "auto" if args.target is None else args.target)
    X, y = table.X, table.y
    task, why = choose_task(y, args.task)
    if task == "classify":
        n_classes = len(np.unique(y))
        if n_classes < 2:
            raise ValueError(f"{args.data}: the target has {n_classes} class; classification "
                             f"needs at least 2")
        n_out, output = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
        what = f"{n_classes} classes"
    else:
        n_out, output = (1 if y.ndim == 1 else y.shape[1]), "identity"
        what = f"{n_out} target{'s' if n_out > 1 else ''}"
    train, val = split_rows(X.shape[0], args.validation_split, args.seed)
    model = accelnn.MLP([X.shape[1], *args.layers, n_out], args.activation, output,
                        seed=args.seed, dtype=dtype, backend=args.backend,
                        classes=np.unique(y) if task == "classify" else None)
    if describe(args.data, table):
        print(describe(args.data, table))
    print(f"{model}\ndata: {args.data}, {X.shape[0]} samples, {X.shape[1]} features, "
          f"{task}, {what}\ntask: {task}: {why}")
    scaler = None
    if args.standardize:
        scaler = Standardizer.fit(X, train, y if task == "regress" else None)
        constant = scaler.constant_columns()
        print(f"standardized the features{' and targets' if task == 'regress' else ''} with "
              f"the mean and standard deviation of the {len(train)} training rows"
              f"{f' ({constant} constant columns only centered)' if constant else ''}")
    print(f"{len(train)} rows to train on, {len(val)} held out to validate", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="accelnn-train-") as folder:
        fit_X = _rows_for_fit(X, train, scaler, dtype, folder)
        fit_y = y[train] if scaler is None else scaler.targets(y[train])
        val_data = None
        if len(val):
            val_y = y[val] if scaler is None else scaler.targets(y[val])
            val_data = (_rows_for_fit(X, val, scaler, dtype, None), val_y)
        with numba_compiles() as compiled:
            history = model.fit(fit_X, fit_y, epochs=args.epochs, batch_size=args.batch_size,
                                optimizer=args.optimizer, lr=args.lr,
                                validation_data=val_data,
                                metrics=("accuracy",) if task == "classify" else (),
                                verbose=0 if args.quiet else 1)
            compiles = compiled()
        del fit_X, val_data  # the temporary file's memory map, before its folder goes
    seconds = time.perf_counter() - t0
    if scaler is not None:
        scaler.fold(model)
    if table.names is not None:  # predict matches a CSV's columns to these by name
        model.feature_names_in_ = np.asarray(table.names, dtype=object)
    print(f"trained {history.epochs} epochs in {seconds:.2f} s on {model.backend.name}"
          + (", compiling the numba kernels it needs on the way (once: later runs load them "
             "from numba's cache)" if compiles else ""))
    for prefix, label, rows in (("", "train", train), ("val_", "validation", val)):
        if len(rows):
            print(f"{label}: loss {history[prefix + 'loss'][-1]:.4f}, "
                  f"{score(model, predict_rows(model, X, rows=rows), y[rows])}")
    if task == "regress":
        print(f"(loss: what fit minimizes, half the mean squared error of the "
              f"{'standardized ' if scaler else ''}targets; the scores are in the targets' "
              f"own units)")
    model.save(args.output)
    folded = "; it takes raw rows, the standardization folded into its weights" \
        if scaler else ""
    print(f"saved the model to {args.output}{folded}")
    if args.plot:
        history.plot(args.plot)
        print(f"saved the curves to {args.plot}")
    return 0
