"""Saving and loading models and training checkpoints: one .npz file of plain arrays plus a
JSON header, read back without pickle.

The header holds the format version, accelnn's version, the architecture, dtype, L2, the
RNG state, the epoch count and the optimizer's name, hyper-parameters and scalar state (and
the schedule, its state and the initial lr for checkpoints written during fit). The arrays are the
weights `W1, b1, ...`, the classes, and the optimizer's per-parameter state `opt.<key>.<i>`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from accelnn._version import __version__
from accelnn.backends import BackendError
from accelnn.optimizers import OPTIMIZERS

FORMAT = "accelnn-mlp"
FORMAT_VERSION = 1


def save(model, path, run: dict | None = None) -> None:
    """Write `model` to `path` atomically (a temporary file in the same folder, then a rename),
    so a crash never leaves a half-written file behind. `run`, from fit's checkpoints: the
    learning-rate schedule's name and state and the initial lr, for an exact resume."""
    opt = model._optimizer
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "accelnn_version": __version__,
        "layer_sizes": list(model.layer_sizes),
        "hidden_activations": [a.name for a in model.activations],
        "output": model.head.name if model.head else "auto",
        "l2": model.l2, "dtype": model.dtype.name,
        "rng_state": model._rng.bit_generator.state, "split_seed": model._split_seed,
        "epoch": model.epoch_,
        "optimizer": None if opt is None else opt.config(),
        "optimizer_scalars": {k: model._opt_state[k] for k in (opt.state_scalars if opt else ())},
        "run": run,  # a checkpoint written by fit: its schedule, schedule state, lr
    }
    arrays = {"header": np.array(json.dumps(header))}
    for l, (W, b) in enumerate(model.get_weights(), start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    for key in (opt.state_arrays if opt else ()):
        for i, a in enumerate(model._opt_state[key]):
            arrays[f"opt.{key}.{i}"] = model.backend.to_numpy(a)
    if model.classes_ is not None:
        classes = model.classes_
        arrays["classes"] = classes if classes.dtype.kind in "biufU" else classes.astype(str)
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".accelnn-", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read(path) -> tuple[dict, dict]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as exc:
        raise ValueError(f"{path}: not a readable accelnn model file "
                         f"({type(exc).__name__}: {exc})") from exc
    if "header" not in arrays:
        raise ValueError(f"{path}: not an accelnn model file (no header)")
    try:
        header = json.loads(str(arrays["header"]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise ValueError(f"{path}: not an accelnn model file (format {fmt!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {header.get('format_version')!r} is not "
                         f"supported (this accelnn {__version__} reads version "
                         f"{FORMAT_VERSION})")
    return header, arrays


def load(path, *, backend=None):
    """Read a model written by `save`, on `backend` (default: the current selection), with
    its optimizer state, so that `fit(..., optimizer=None)` continues it.
    Raises ValueError naming the problem for a file that is not an accelnn model, truncated,
    of another format version, or whose arrays do not match its header."""
    return _load(os.fspath(path), backend)[0]


def _load(path: str, backend):
    """(model, header) of the file at `path`: one read serves loading and resuming."""
    from accelnn.model import MLP, check_classes

    header, arrays = _read(path)
    try:
        model = MLP(header["layer_sizes"], header["hidden_activations"], header["output"],
                    l2=header["l2"], dtype=header["dtype"], backend=backend)
        n_layers = len(header["layer_sizes"]) - 1
        missing = [k for l in range(1, n_layers + 1) for k in (f"W{l}", f"b{l}")
                   if k not in arrays]
        if missing:
            raise ValueError(f"arrays missing for {', '.join(missing)}")
        model.set_weights([(arrays[f"W{l}"], arrays[f"b{l}"]) for l in range(1, n_layers + 1)])
        model._rng.bit_generator.state = header["rng_state"]
        model._split_seed = int(header["split_seed"])
        _load_optimizer(model, header, arrays)
        model.epoch_ = _count("epoch", header["epoch"])
        if "classes" in arrays:
            model.classes_ = check_classes(arrays["classes"], model.layer_sizes[-1])
    except BackendError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{path}: bad model file: {what}") from exc
    return model, header


def _count(name: str, value) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _load_optimizer(model, header: dict, arrays: dict) -> None:
    config = header["optimizer"]
    if config is None:
        return
    if config.get("name") not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.get('name')!r}")
    opt = OPTIMIZERS[config["name"]](**config["params"])
    state = {}
    for key in opt.state_arrays:
        state[key] = []
        for i, p in enumerate(model._params):
            a = arrays.get(f"opt.{key}.{i}")
            if a is None or a.shape != p.shape:
                got = "missing" if a is None else f"shape {a.shape}"
                raise ValueError(f"optimizer state opt.{key}.{i}: expected shape {p.shape}, "
                                 f"{got}")
            state[key].append(model.backend.asarray(a, model.dtype))
    for key in opt.state_scalars:
        state[key] = _count(f"optimizer state {key}", header["optimizer_scalars"][key])
    model._optimizer, model._opt_state = opt, state


def read_checkpoint(model, path) -> dict:
    """A checkpoint of `model`'s architecture as {"model", "schedule"}; ValueError when it is
    unreadable, of another architecture or dtype, or holds no optimizer state."""
    loaded, header = _load(os.fspath(path), model.backend)
    mine = (model.layer_sizes, [a.name for a in model.activations], model.dtype.name)
    theirs = (loaded.layer_sizes, [a.name for a in loaded.activations], loaded.dtype.name)
    if mine != theirs:
        raise ValueError(f"{path}: the checkpoint is of another network (layers, activations,"
                         f" dtype) {theirs}, not {mine}")
    if model.head is not None and loaded.head is not None and model.head is not loaded.head:
        raise ValueError(f"{path}: the checkpoint has a {loaded.head.name} output, the model "
                         f"a {model.head.name} output")
    if loaded._optimizer is None:
        raise ValueError(f"{path}: the file holds no optimizer state to resume from")
    return {"model": loaded, "optimizer": loaded._optimizer, "epoch": loaded.epoch_,
            "run": header["run"]}
