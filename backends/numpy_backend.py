"""The NumPy backend: the base class's generic defaults, unchanged. It is the reference that
every other backend is tested against."""

from __future__ import annotations

from accelnn.backends.base import Backend


class NumpyBackend(Backend):
    name = "numpy"
