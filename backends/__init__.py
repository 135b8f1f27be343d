"""Backend registry and selection.

Precedence, highest first: an explicit `backend=` argument > `use_backend(...)` (a context
manager, per thread and per asyncio task through contextvars) > `set_backend(...)` >
the `ACCELNN_BACKEND` environment variable (numpy | numba | cupy | auto) > "auto".

"auto" picks cupy when a CUDA device actually works, else numba when it imports, else numpy.
Built-in backends are imported only when asked for; third-party ones register under the
entry-point group `accelnn.backends` (the entry point names a `Backend` subclass).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
from importlib.metadata import entry_points
from typing import NamedTuple

from accelnn.backends.base import Backend

BUILTIN = {
    "numpy": "accelnn.backends.numpy_backend:NumpyBackend",
    "numba": "accelnn.backends.numba_backend:NumbaBackend",
    "cupy": "accelnn.backends.cupy_backend:CupyBackend",
}
AUTO_ORDER = ("cupy", "numba", "numpy")
ENTRY_POINT_GROUP = "accelnn.backends"


class BackendError(ValueError):
    """An unknown backend name, or a backend that cannot run on this machine."""


class BackendStatus(NamedTuple):
    name: str
    available: bool
    reason: str  # why not, or "" when available


_lock = threading.Lock()
_classes: dict[str, type[Backend]] = {}
_status: dict[str, BackendStatus] = {}
_instances: dict[str, Backend] = {}
_global: str | None = None
_context: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "accelnn_backend", default=None
)


_plugins: dict[str, str] | None = None


def _registered() -> dict[str, str]:
    """Every known backend name mapped to 'module:Class' (built-ins first, then plugins).
    The entry points are scanned once per process: a scan costs most of a millisecond."""
    global _plugins
    if _plugins is None:
        _plugins = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**BUILTIN, **{k: v for k, v in _plugins.items() if k not in BUILTIN}}


def _probe(name: str) -> BackendStatus:
    target = _registered()[name]
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        return BackendStatus(name, False, f"not installed ({exc})")
    except Exception as exc:  # a broken plugin must not break the others
        return BackendStatus(name, False, f"failed to import: {type(exc).__name__}: {exc}")
    try:
        reason = cls.probe()
    except Exception as exc:
        reason = f"probe failed: {type(exc).__name__}: {exc}"
    if reason is None:
        _classes[name] = cls
        return BackendStatus(name, True, "")
    return BackendStatus(name, False, reason)


def _status_of(name: str) -> BackendStatus:
    with _lock:
        if name not in _status:
            _status[name] = _probe(name)
        return _status[name]


def available_backends() -> dict[str, BackendStatus]:
    """Every registered backend with whether it can run here and, if not, why."""
    return {name: _status_of(name) for name in _registered()}


def _choices_message() -> str:
    lines = []
    for st in available_backends().values():
        lines.append(f"  {st.name}: {'available' if st.available else st.reason}")
    return "backends: auto, " + ", ".join(_registered()) + "\n" + "\n".join(lines)


def auto_choice() -> tuple[str, str]:
    """The backend "auto" picks here, and a sentence saying why."""
    skipped = []
    for name in AUTO_ORDER:
        st = _status_of(name)
        if st.available:
            why = f"auto picked {name}"
            return name, why + (" (skipped " + "; ".join(skipped) + ")" if skipped else "")
        skipped.append(f"{name}: {st.reason}")
    raise BackendError("no backend can run here:\n" + _choices_message())  # pragma: no cover


def _check_name(name: str, source: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name or a Backend, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "auto":
        return auto_choice()[0]
    if key not in _registered():
        raise BackendError(f"unknown backend {name!r}{source}\n{_choices_message()}")
    st = _status_of(key)
    if not st.available:
        raise BackendError(f"backend {key!r}{source} cannot run here: {st.reason}\n"
                           f"{_choices_message()}")
    return key


def _requested() -> tuple[str, str]:
    for value, source in ((_context.get(), " (from use_backend)"),
                          (_global, " (from set_backend)"),
                          (os.environ.get("ACCELNN_BACKEND") or None,
                           " (from ACCELNN_BACKEND)")):
        if value is not None:
            return value, source
    return "auto", ""


def get_backend(name: str | Backend | None = None) -> Backend:
    """The backend to use: `name` when given, else the one selected by context, global setting,
    environment or auto (see the module docstring). Raises BackendError for an unknown name or
    a backend that cannot run here, with the list of backends and why each is (un)available."""
    if isinstance(name, Backend):
        return name
    source = ""
    if name is None:
        name, source = _requested()
    key = _check_name(name, source)
    with _lock:
        if key not in _instances:
            _instances[key] = _classes[key]()
        return _instances[key]


def set_backend(name: str | None) -> None:
    """Select the process-wide default backend (None clears it). Rejects unknown or unusable
    names at once, with BackendError."""
    global _global
    if name is not None:
        _check_name(name, "")
    _global = name


@contextlib.contextmanager
def use_backend(name: str):
    """Use backend `name` inside a `with` block (this thread / asyncio task only). Rejects
    unknown or unusable names at once, with BackendError."""
    _check_name(name, "")
    token = _context.set(name)
    try:
        yield get_backend()
    finally:
        _context.reset(token)
