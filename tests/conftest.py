"""Shared fixtures: one `backend` fixture over every registered backend, skipping (with the
reason) those that cannot run here."""

from __future__ import annotations

import numpy as np
import pytest

from accelnn.backends import _registered, available_backends, get_backend

BACKEND_NAMES = list(_registered())


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """Every backend that can run here; the rest are skipped with the reason."""
    status = available_backends()[request.param]
    if not status.available:
        pytest.skip(f"backend {request.param} unavailable: {status.reason}")
    return get_backend(request.param)


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    return np.dtype(request.param)


def max_rel_err(a, b) -> float:
    """max |a - b| / max(max |b|, tiny): error relative to the reference's scale."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


class ArrayOnly:
    """A producer with __array__ only."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a


class DLPackOnly:
    """A producer with __dlpack__ only."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()
