"""Saving and loading models: one .npz file of plain arrays plus a JSON header, no pickle."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from accelnn._version import __version__
from accelnn.backends import BackendError

FORMAT = "accelnn-mlp"
FORMAT_VERSION = 1


def save(model, path) -> None:
    """Write `model` to `path` atomically (a temporary file in the same folder, then a rename),
    so a crash never leaves a half-written model behind."""
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "accelnn_version": __version__,
        "layer_sizes": list(model.layer_sizes),
        "hidden_activations": [a.name for a in model.activations],
        "output": model.head.name if model.head else "auto",
        "l2": model.l2, "dtype": model.dtype.name,
        "rng_state": model._rng.bit_generator.state,
    }
    arrays = {"header": np.array(json.dumps(header))}
    for l, (W, b) in enumerate(model.get_weights(), start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
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


def load(path, *, backend=None):
    """Read a model written by `save`, on `backend` (default: the current selection).
    Raises ValueError naming the problem for a file that is not an accelnn model, truncated,
    of another format version, or whose arrays do not match its header."""
    from accelnn.model import MLP

    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable accelnn model file "
                         f"({type(exc).__name__}: {exc})") from exc
    if "header" not in arrays:
        raise ValueError(f"{path}: not an accelnn model file (no header)")
    try:
        header = json.loads(str(arrays["header"]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt header: {exc}") from exc
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an accelnn model file (format {header.get('format')!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {header.get('format_version')!r} is not "
                         f"supported (this accelnn {__version__} reads version "
                         f"{FORMAT_VERSION})")
    try:
        model = MLP(header["layer_sizes"], header["hidden_activations"], header["output"],
                    l2=header["l2"], dtype=header["dtype"], backend=backend)
    except BackendError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: bad header: {type(exc).__name__}: {exc}") from exc
    n_layers = len(header["layer_sizes"]) - 1
    missing = [k for l in range(1, n_layers + 1) for k in (f"W{l}", f"b{l}") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: arrays missing for {', '.join(missing)}")
    try:
        model.set_weights([(arrays[f"W{l}"], arrays[f"b{l}"]) for l in range(1, n_layers + 1)])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if "classes" in arrays:
        model.classes_ = arrays["classes"]
    model._rng.bit_generator.state = header["rng_state"]
    return model
