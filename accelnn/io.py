"""Saving and loading models and training checkpoints: one .npz file of plain arrays plus a
JSON header, read back without pickle.

The header holds the format version, accelnn's version, the architecture, dtype, L2, the
RNG state, the epoch and sample counts and the optimizer's name, hyper-parameters and scalar
state (and the schedule, its state and the initial lr for checkpoints written during fit). The
arrays are the weights `W1, b1, ...`, the classes, and the optimizer's per-parameter state
`opt.<key>.<i>`.

This module reads and writes a `ModelFile` (a model's configuration, classes and training
state on the host); `accelnn.MLP.save`/`load` and fit's checkpoints go through it. A file is
untrusted input: `read` checks everything in it before it returns, so a caller can adopt the
result knowing that nothing will fail halfway.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from accelnn._data import resolve_dtype
from accelnn._version import __version__
from accelnn.files import write_atomic
from accelnn.losses import get_head
from accelnn.network import check_layer_sizes, hidden_activations
from accelnn.optimizers import OPTIMIZERS, check_range
from accelnn.state import SavedState
from accelnn.targets import check_classes

FORMAT = "accelnn-mlp"
FORMAT_VERSION = 1


@dataclass
class ModelFile:
    """What a model file holds. `config` is MLP.get_config(): layer_sizes, hidden_activation
    (a list of names), output ("auto" or a head), l2 and dtype (a name)."""

    config: dict
    classes: np.ndarray | None
    state: SavedState
    feature_names: list[str] | None = None  # MLP.feature_names_in_, when it has them


def save(path, record: ModelFile) -> None:
    """Write `record` to `path` atomically (accelnn.files.write_atomic: a temporary file in the
    same folder, fsynced, then a rename), so a crash or an interrupt leaves the old file or the
    new one whole, never half of one, and a re-saved file keeps its mode."""
    state, opt, config = record.state, record.state.optimizer, record.config
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "accelnn_version": __version__,
        "layer_sizes": list(config["layer_sizes"]),
        "hidden_activations": list(config["hidden_activation"]),
        "output": config["output"], "l2": config["l2"], "dtype": config["dtype"],
        "rng_state": state.rng_state, "split_seed": state.split_seed,
        "epoch": state.epoch, "samples_seen": state.samples_seen,
        "optimizer": None if opt is None else opt.config(),
        "optimizer_scalars": state.opt_scalars,
        "run": state.run,  # a checkpoint written by fit: its schedule, schedule state, lr
        "feature_names": record.feature_names,
    }
    arrays = {"header": np.array(json.dumps(header))}
    for l, (W, b) in enumerate(zip(state.params[0::2], state.params[1::2]), start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    for key, values in state.opt_arrays.items():
        for i, a in enumerate(values):
            arrays[f"opt.{key}.{i}"] = a
    if record.classes is not None:
        classes = record.classes
        arrays["classes"] = classes if classes.dtype.kind in "biufU" else classes.astype(str)
    write_atomic(path, lambda f: np.savez(f, **arrays))


def _read_arrays(path) -> tuple[dict, dict]:
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


def read(path) -> ModelFile:
    """The model file at `path`, every part of it checked: the architecture, dtype and L2,
    each array's shape and values (finite, representable in the dtype), the classes, the
    optimizer and its state, the RNG state and the counts.
    Raises ValueError naming the file and the problem for a file that is not an accelnn model,
    truncated, of another format version, or whose parts do not fit together."""
    path = os.fspath(path)
    header, arrays = _read_arrays(path)
    try:
        return _record(header, arrays)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{path}: bad model file: {what}") from exc


def _record(header: dict, arrays: dict) -> ModelFile:
    sizes = check_layer_sizes(header["layer_sizes"])
    acts = hidden_activations(list(header["hidden_activations"]), len(sizes) - 2)
    output = header["output"]
    if output != "auto":
        get_head(output)
    dtype = resolve_dtype(header["dtype"])
    config = {"layer_sizes": list(sizes), "hidden_activation": [a.name for a in acts],
              "output": output, "l2": check_range("l2", header["l2"], 0.0),
              "dtype": dtype.name}
    shapes = [s for n_in, n_out in zip(sizes, sizes[1:]) for s in ((n_in, n_out), (n_out,))]
    names = [f"{w}{l}" for l in range(1, len(sizes)) for w in "Wb"]
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"arrays missing for {', '.join(missing)}")
    params = [_member(arrays[name], f"layer {name[1:]} {name[0]}", shape, dtype)
              for name, shape in zip(names, shapes)]
    classes = None
    if "classes" in arrays:
        classes = check_classes(arrays["classes"], sizes[-1])
    opt, opt_arrays, opt_scalars = None, {}, {}
    if header["optimizer"] is not None:
        config_opt = header["optimizer"]
        if config_opt.get("name") not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {config_opt.get('name')!r}")
        opt = OPTIMIZERS[config_opt["name"]](**config_opt["params"])
        opt_arrays = {key: [_member(arrays.get(f"opt.{key}.{i}"),
                                    f"optimizer state opt.{key}.{i}", shape, dtype)
                            for i, shape in enumerate(shapes)] for key in opt.state_arrays}
        opt_scalars = {key: _count(f"optimizer state {key}", header["optimizer_scalars"][key])
                       for key in opt.state_scalars}
    rng = np.random.default_rng()
    rng.bit_generator.state = header["rng_state"]
    epoch = _count("epoch", header["epoch"])
    state = SavedState(params, opt, opt_arrays, opt_scalars, rng.bit_generator.state,
                       _count("split_seed", header["split_seed"]), epoch,
                       _count("samples_seen", header.get("samples_seen", 0)), header["run"])
    names = header.get("feature_names")
    if names is not None and not (isinstance(names, list) and len(names) == sizes[0]
                                  and all(isinstance(n, str) for n in names)):
        raise ValueError(f"feature_names must be {sizes[0]} strings, got {names!r}")
    return ModelFile(config, classes, state, names)


def _member(a: np.ndarray | None, what: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """`a`, an array read from the file, checked: of `shape`, numeric and finite in `dtype`."""
    if a is None or a.shape != shape:
        raise ValueError(f"{what}: expected shape {shape}, got "
                         f"{'nothing' if a is None else a.shape}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{what}: dtype {a.dtype} is not numeric")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or Inf")
    with np.errstate(over="ignore"):
        cast = a.astype(dtype)
    if not np.isfinite(cast).all():
        raise ValueError(f"{what} has values too large for {dtype.name}")
    return cast


def _count(name: str, value) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value
