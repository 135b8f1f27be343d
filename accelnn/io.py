"""Saving and loading models and training checkpoints: one .npz file of plain arrays plus a
JSON header, read back without pickle.

The header holds the format version, accelnn's version, the architecture, dtype, L2, the
RNG state, the epoch and sample counts, the optimizer's name, hyper-parameters and scalar
state, the classes' stored dtype and whether they were an object array (and the schedule, its
state and the initial lr for checkpoints written during fit). The arrays are the weights
`W1, b1, ...`, the classes, and the optimizer's per-parameter state `opt.<key>.<i>`.

This module reads and writes a `ModelFile` (a model's configuration, classes and training
state on the host); `accelnn.MLP.save`/`load` and fit's checkpoints go through it.

A file is untrusted input. `read` checks everything in it before it returns, so a caller can
adopt the result knowing that nothing will fail halfway: first the JSON header (at most
MAX_HEADER_CHARS characters), every value of it (types, ranges, the RNG state by building a
bit generator from it, the optimizer by building it), then every array's .npy header against
the shape the header implies, and only then any array's data (accelnn.npzfile), reading only
the members it knows. So it never allocates more than about twice what the file's header
declares. A file that fails raises ValueError naming the file and the problem; OSError
stays for I/O.

Labels (classes) survive a save exactly: arrays of numbers, str or bytes are stored as they
are; an object array (of Python numbers, str or bytes, as accelnn.targets admits) is stored as
the typed array of its values with `classes_object` set, and comes back as an object array of
equal values.
"""

from __future__ import annotations

import inspect
import json
import os
import reprlib
from dataclasses import dataclass

import numpy as np

from accelnn._data import DTYPES
from accelnn._version import __version__
from accelnn.files import write_atomic
from accelnn.losses import get_head
from accelnn.network import check_layer_sizes, hidden_activations
from accelnn.npzfile import Archive, Declared, Unreadable
from accelnn.optimizers import OPTIMIZERS, check_lr, check_range
from accelnn.schedules import SCHEDULES
from accelnn.state import SavedState
from accelnn.targets import check_classes, n_classes, restored_labels, stored_labels

FORMAT = "accelnn-mlp"
FORMAT_VERSION = 1
MAX_HEADER_CHARS = 1 << 20  # a header is a few KB; this bounds what a file makes us parse
MAX_LEGACY_LABEL_BYTES = 1 << 16  # per label, for files that do not declare the classes' dtype
COUNT_LIMIT = 2**62  # epoch, samples_seen and optimizer step counts stay below it
SEED_LIMIT = 2**63  # split_seed is drawn below it
# Optimizer state arrays that are running means of squared gradients, hence >= 0: Adam's
# (and AdamW's) second moment and RMSprop's.
NONNEGATIVE_STATE = ("v", "sq")


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
    new one whole, never half of one, and a re-saved file keeps its mode. Raises ValueError,
    before writing anything, for classes that cannot be stored without pickle (see
    accelnn.targets)."""
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
    arrays = {}
    for l, (W, b) in enumerate(zip(state.params[0::2], state.params[1::2]), start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    for key, values in state.opt_arrays.items():
        for i, a in enumerate(values):
            arrays[f"opt.{key}.{i}"] = a
    if record.classes is not None:
        arrays["classes"], header["classes_object"] = stored_labels(record.classes)
        header["classes_dtype"] = arrays["classes"].dtype.str
    arrays["header"] = np.array(json.dumps(header))
    write_atomic(path, lambda f: np.savez(f, **arrays))


class _Rejected(ValueError):
    """A file that is not an accelnn model file of this format version; the message follows
    the file's name as it is."""


def read(path) -> ModelFile:
    """The model file at `path`, every part of it checked (see the module docstring): the
    architecture, dtype and L2, each array's shape and values (finite, representable in the
    dtype, optimizer state in its range), the classes, the optimizer and its state, the RNG
    state, the split seed and the counts, and a checkpoint's schedule record.
    Raises ValueError naming the file and the problem for a file that is not an accelnn model,
    truncated, damaged, of another format version, or whose parts do not fit together;
    TypeError for a `path` that is not a path; OSError when the file cannot be read."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a file path (str or os.PathLike), got "
                        f"{type(path).__name__}") from None
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ValueError(f"{path}: not an accelnn model file: it holds one NumPy array "
                             f"(.npy); MLP.save writes an .npz archive")
        f.seek(0)
        try:
            with Archive(f) as archive:
                return _record(_header(archive), archive)
        except Unreadable as exc:
            raise ValueError(f"{path}: not a readable accelnn model file ({exc})") from exc
        except _Rejected as exc:
            raise ValueError(f"{path}: {exc}") from exc
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            what = (f"missing {exc}" if isinstance(exc, KeyError)
                    else f"{type(exc).__name__}: {exc}")
            raise ValueError(f"{path}: bad model file: {what}") from exc


def _show(value) -> str:
    """A short repr of a value read from a file (which may be huge or deeply nested)."""
    return reprlib.repr(value)


def _header(archive: Archive) -> dict:
    if "header" not in archive:
        raise _Rejected("not an accelnn model file (no header)")
    try:
        d = archive.declared("header")
        if d.shape != () or d.dtype.kind != "U" or d.dtype.itemsize > 4 * MAX_HEADER_CHARS:
            raise _Rejected(f"corrupt header: expected a text of at most {MAX_HEADER_CHARS} "
                            f"characters, got an array of shape {d.shape}, dtype {d.dtype}")
        text = archive.read(d).item()
    except Unreadable as exc:
        raise _Rejected(f"corrupt header: {exc}") from exc
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Rejected(f"corrupt header: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise _Rejected(f"not an accelnn model file (format {_show(fmt)})")
    version = header.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise _Rejected(f"format version {_show(version)} is not supported (this accelnn "
                        f"{__version__} reads version {FORMAT_VERSION})")
    return header


def _typed(header: dict, key: str, types, what: str):
    """header[key] when it is one of `types` (never a bool unless bool is asked for)."""
    if key not in header:
        raise ValueError(f"the header has no {key!r}")
    value, types = header[key], types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise ValueError(f"{key} must be {what}, got {_show(value)}")
    return value


def _config(header: dict) -> dict:
    sizes = check_layer_sizes(_typed(header, "layer_sizes", list, "a list of integers"))
    names = _typed(header, "hidden_activations", list, "a list of names")
    acts = hidden_activations(names, len(sizes) - 2)
    output = _typed(header, "output", str, "a name")
    if output != "auto":
        get_head(output)
    dtype = _typed(header, "dtype", str, "float32 or float64")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {_show(dtype)}")
    l2 = check_range("l2", _typed(header, "l2", (int, float), "a number"), 0.0)
    return {"layer_sizes": list(sizes), "hidden_activation": [a.name for a in acts],
            "output": output, "l2": l2, "dtype": dtype}


def _count(name: str, value, limit: int = COUNT_LIMIT) -> int:
    """`value` when it is an int in [0, limit), `limit` a power of two."""
    if not (type(value) is int and 0 <= value < limit):
        raise ValueError(f"{name} must be an integer in [0, 2**{limit.bit_length() - 1}), "
                         f"got {_show(value)}")
    return value


def _optimizer(header: dict):
    """(optimizer or None, its scalar state), both checked."""
    spec = _typed(header, "optimizer", (dict, type(None)), "null or {name, params}")
    if spec is None:
        return None, {}
    name, params = spec.get("name"), spec.get("params")
    if not (isinstance(name, str) and name in OPTIMIZERS):
        raise ValueError(f"unknown optimizer {_show(name)}; known: {', '.join(OPTIMIZERS)}")
    if not isinstance(params, dict):
        raise ValueError(f"optimizer params must be a dict, got {_show(params)}")
    cls = OPTIMIZERS[name]
    signature = inspect.signature(cls).parameters
    for key, value in params.items():
        if key not in signature:
            raise ValueError(f"optimizer {name} has no parameter {_show(key)}")
        flag = isinstance(signature[key].default, bool)
        if flag != isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"optimizer {name} parameter {key} must be "
                             f"{'true or false' if flag else 'a number'}, got {_show(value)}")
    opt = cls(**params)
    scalars = _typed(header, "optimizer_scalars", dict, "a dict")
    missing = [key for key in opt.state_scalars if key not in scalars]
    if missing:
        raise ValueError(f"optimizer_scalars lacks {', '.join(missing)}")
    return opt, {key: _count(f"optimizer state {key}", scalars[key])
                 for key in opt.state_scalars}


def _rng_state(header: dict) -> dict:
    """The RNG state, checked by building a PCG64 bit generator from it."""
    state = _typed(header, "rng_state", dict, "a PCG64 state")
    inner = state.get("state")
    ok = (state.get("bit_generator") == "PCG64" and isinstance(inner, dict)
          and all(type(inner.get(k)) is int and 0 <= inner[k] < 2**128
                  for k in ("state", "inc"))
          and type(state.get("has_uint32")) is int and state["has_uint32"] in (0, 1)
          and type(state.get("uinteger")) is int and 0 <= state["uinteger"] < 2**32)
    if ok:
        try:
            bits = np.random.PCG64()
            bits.state = state
            return bits.state
        except (TypeError, ValueError, OverflowError, KeyError):
            pass
    raise ValueError(f"rng_state must be the state of a PCG64 bit generator (numpy.random."
                     f"default_rng's), got {_show(state)}")


def _run(header: dict) -> dict | None:
    """A checkpoint's schedule record: the schedule's name, its state and the initial lr."""
    run = header.get("run")
    if run is None:
        return None
    if not (isinstance(run, dict) and set(run) == {"schedule", "schedule_state", "lr"}):
        raise ValueError(f"run must be null or {{schedule, schedule_state, lr}}, got "
                         f"{_show(run)}")
    name = run["schedule"]
    if not (isinstance(name, str) and name in SCHEDULES):
        raise ValueError(f"run: unknown schedule {_show(name)}")
    state = SCHEDULES[name]().check_state(run["schedule_state"])
    return {"schedule": name, "schedule_state": state, "lr": check_lr(run["lr"])}


def _classes_declared(header: dict, archive: Archive, n_out: int, head: str | None):
    """(Declared, was_object) for the classes member, or (None, False) without classes."""
    has = "classes" in archive
    if "classes_dtype" in header and not has:
        raise ValueError("arrays missing for classes")
    if not has:
        return None, False
    d = archive.declared("classes")
    was_object = header.get("classes_object", False)
    if not isinstance(was_object, bool):
        raise ValueError(f"classes_object must be true or false, got {_show(was_object)}")
    need = n_classes(n_out, head)
    if d.shape != (need,):
        raise ValueError(f"classes must be {need} distinct labels, one per decision of {n_out} "
                         f"output unit{'s' if n_out > 1 else ''}, got an array of shape "
                         f"{d.shape}")
    if d.dtype.kind not in "biufUS":
        raise ValueError(f"classes: dtype {d.dtype} is not one of labels (numbers, str, bytes)")
    if "classes_dtype" in header:  # bounds what the labels may take
        want = header["classes_dtype"]
        try:
            want = np.dtype(want) if isinstance(want, str) else None
        except (TypeError, ValueError, OverflowError):
            want = None
        if want is None or want.kind != d.dtype.kind or d.dtype.itemsize > want.itemsize:
            raise ValueError(f"classes: the header declares dtype "
                             f"{_show(header['classes_dtype'])}, the array has {d.dtype.str}")
    elif d.dtype.itemsize > MAX_LEGACY_LABEL_BYTES:
        raise ValueError(f"classes: labels of {d.dtype.itemsize} bytes each (at most "
                         f"{MAX_LEGACY_LABEL_BYTES})")
    return d, was_object


def _record(header: dict, archive: Archive) -> ModelFile:
    # 1. the header, every value of it
    config = _config(header)
    sizes, dtype = config["layer_sizes"], DTYPES[config["dtype"]]
    opt, opt_scalars = _optimizer(header)
    rng_state = _rng_state(header)
    split_seed = _count("split_seed", header.get("split_seed"), SEED_LIMIT)
    epoch = _count("epoch", header.get("epoch"))
    samples_seen = _count("samples_seen", header.get("samples_seen", 0))
    run = _run(header)
    names = header.get("feature_names")
    if names is not None and not (isinstance(names, list) and len(names) == sizes[0]
                                  and all(isinstance(n, str) for n in names)):
        raise ValueError(f"feature_names must be {sizes[0]} strings, got "
                         f"{reprlib.repr(names)}")
    # 2. every member's declared shape and dtype, before any data is read
    shapes = [s for n_in, n_out in zip(sizes, sizes[1:]) for s in ((n_in, n_out), (n_out,))]
    members = [(f"{w}{l}", f"layer {l} {w}") for l in range(1, len(sizes)) for w in "Wb"]
    keys = opt.state_arrays if opt is not None else ()
    members += [(f"opt.{key}.{i}", f"optimizer state opt.{key}.{i}")
                for key in keys for i in range(len(shapes))]
    missing = [name for name, _ in members if name not in archive]
    if missing:
        raise ValueError(f"arrays missing for {', '.join(missing)}")
    declared = []
    for (name, what), shape in zip(members, shapes * (1 + len(keys))):
        d = archive.declared(name)
        if d.shape != shape:
            raise ValueError(f"{what}: expected shape {shape}, got {d.shape}")
        if d.dtype.kind not in "biuf":
            raise ValueError(f"{what}: dtype {d.dtype} is not numeric")
        declared.append((d, what))
    head = None if config["output"] == "auto" else get_head(config["output"]).name
    classes_d, was_object = _classes_declared(header, archive, sizes[-1], head)
    # 3. the data, each array checked as it is read
    arrays = [_values(archive, d, what, dtype) for d, what in declared]
    params, opt_arrays = arrays[:len(shapes)], {}
    for k, key in enumerate(keys):
        opt_arrays[key] = arrays[len(shapes) * (k + 1):len(shapes) * (k + 2)]
        if key in NONNEGATIVE_STATE:
            for i, a in enumerate(opt_arrays[key]):
                if (a < 0).any():
                    raise ValueError(f"optimizer state opt.{key}.{i} (a mean of squared "
                                     f"gradients) has negative values")
    classes = None
    if classes_d is not None:
        classes = check_classes(restored_labels(archive.read(classes_d), was_object),
                                sizes[-1], head)
    state = SavedState(params, opt, opt_arrays, opt_scalars, rng_state, split_seed, epoch,
                       samples_seen, run)
    return ModelFile(config, classes, state, names)


def _values(archive: Archive, d: Declared, what: str, dtype: np.dtype) -> np.ndarray:
    """Member `d`'s array (of a checked shape and numeric dtype) in `dtype`, its values
    checked: finite, and representable in `dtype`."""
    a = archive.read(d)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or Inf")
    with np.errstate(over="ignore"):
        cast = a.astype(dtype, copy=False)
    if not np.isfinite(cast).all():
        raise ValueError(f"{what} has values too large for {dtype.name}")
    return cast
