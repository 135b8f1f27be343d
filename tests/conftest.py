"""Shared fixtures: one `backend` fixture over every registered backend, skipping (with the
reason) those that cannot run here."""

from __future__ import annotations

import numpy as np
import pytest

from accelnn.backends import _registered, available_backends, get_backend

# max |a - b| / max |b|, the benchmark's own error measure; the tests import it from here.
from accelnn.bench.measuring import rel_err as max_rel_err  # noqa: F401

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
