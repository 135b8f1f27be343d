"""Backend selection: argument > use_backend > set_backend > ACCELNN_BACKEND > auto."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import numpy as np
import pytest

import accelnn
from accelnn import backends


@pytest.fixture(autouse=True)
def clean_selection(monkeypatch):
    monkeypatch.delenv("ACCELNN_BACKEND", raising=False)
    monkeypatch.delenv("ACCELNN_DTYPE", raising=False)
    accelnn.set_backend(None)
    yield
    accelnn.set_backend(None)


def test_env_var_selects_numpy(monkeypatch):
    monkeypatch.setenv("ACCELNN_BACKEND", "numpy")
    assert accelnn.get_backend().name == "numpy"
    assert accelnn.MLP([2, 1]).backend.name == "numpy"


def test_env_var_bogus_is_a_clear_error_listing_the_choices(monkeypatch):
    monkeypatch.setenv("ACCELNN_BACKEND", "bogus")
    with pytest.raises(accelnn.BackendError) as info:
        accelnn.get_backend()
    message = str(info.value)
    assert "unknown backend 'bogus' (from ACCELNN_BACKEND)" in message
    assert "backends: auto, numpy, numba, cupy" in message
    assert "numpy: available" in message
    assert "cupy: " in message


def test_import_never_fails_and_cli_reports_bogus_env():
    env = {"ACCELNN_BACKEND": "bogus", "PATH": ""}
    code = ("import accelnn, sys; from accelnn.cli import main; sys.exit(main(['info']))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "selected: error: unknown backend 'bogus' (from ACCELNN_BACKEND)" in proc.stdout
    assert "numpy  available" in proc.stdout


def test_precedence(monkeypatch):
    monkeypatch.setenv("ACCELNN_BACKEND", "bogus")
    accelnn.set_backend("numpy")
    assert accelnn.get_backend().name == "numpy"  # set_backend beats the env var
    with accelnn.use_backend("numpy") as be:
        assert be.name == "numpy"
    assert accelnn.get_backend(backends.get_backend("numpy")).name == "numpy"


def test_explicit_argument_beats_context(monkeypatch):
    monkeypatch.setenv("ACCELNN_BACKEND", "bogus")
    with pytest.raises(accelnn.BackendError):
        accelnn.MLP([2, 1])
    assert accelnn.MLP([2, 1], backend="numpy").backend.name == "numpy"


def test_set_and_use_backend_reject_bad_names_at_once():
    with pytest.raises(accelnn.BackendError, match="unknown backend 'nope'"):
        accelnn.set_backend("nope")
    with pytest.raises(accelnn.BackendError, match="unknown backend 'nope'"):
        with accelnn.use_backend("nope"):
            pass
    with pytest.raises(TypeError, match="backend must be a name"):
        accelnn.get_backend(3)


def test_unusable_backend_by_name_says_why(monkeypatch):
    fake = backends.BackendStatus("cupy", False, "installed, but no CUDA device: test")
    monkeypatch.setitem(backends._status, "cupy", fake)
    with pytest.raises(accelnn.BackendError,
                       match="backend 'cupy' cannot run here: installed, but no CUDA device"):
        accelnn.get_backend("cupy")


def test_auto_picks_in_order_and_says_why(monkeypatch):
    monkeypatch.setitem(backends._status, "cupy",
                        backends.BackendStatus("cupy", False, "not installed (test)"))
    monkeypatch.setitem(backends._status, "numba",
                        backends.BackendStatus("numba", False, "not installed (test)"))
    name, why = backends.auto_choice()
    assert name == "numpy"
    assert "cupy: not installed (test)" in why and "numba: not installed (test)" in why
    assert accelnn.get_backend("auto").name == "numpy"


def test_available_backends_lists_every_builtin():
    status = accelnn.available_backends()
    assert set(status) >= {"numpy", "numba", "cupy"}
    assert status["numpy"].available and status["numpy"].reason == ""
    for st in status.values():
        assert st.available or st.reason


def test_use_backend_is_per_thread():
    seen = {}
    barrier = threading.Barrier(2)

    def worker(name, use):
        if use:
            with accelnn.use_backend("numpy"):
                barrier.wait()
                seen[name] = accelnn.get_backend().name
                barrier.wait()
        else:
            barrier.wait()
            try:
                seen[name] = accelnn.get_backend().name
            except accelnn.BackendError:
                seen[name] = "error"
            barrier.wait()

    accelnn.set_backend(None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACCELNN_BACKEND", "bogus")
        threads = [threading.Thread(target=worker, args=(n, n == "a")) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert seen == {"a": "numpy", "b": "error"}


def test_use_backend_is_per_task(monkeypatch):
    monkeypatch.setenv("ACCELNN_BACKEND", "bogus")

    async def inside():
        with accelnn.use_backend("numpy"):
            await asyncio.sleep(0.01)
            return accelnn.get_backend().name

    async def outside():
        await asyncio.sleep(0.005)
        try:
            return accelnn.get_backend().name
        except accelnn.BackendError:
            return "error"

    async def main():
        return await asyncio.gather(inside(), outside())

    assert asyncio.run(main()) == ["numpy", "error"]


def test_dtype_env(monkeypatch):
    monkeypatch.setenv("ACCELNN_DTYPE", "float64")
    assert accelnn.MLP([2, 1], backend="numpy").dtype == np.float64
    monkeypatch.setenv("ACCELNN_DTYPE", "float32")
    assert accelnn.MLP([2, 1], backend="numpy").dtype == np.float32
    monkeypatch.setenv("ACCELNN_DTYPE", "half")
    with pytest.raises(ValueError, match="unsupported dtype 'half' \\(from ACCELNN_DTYPE\\)"):
        accelnn.MLP([2, 1], backend="numpy")


def test_plugin_entry_point(monkeypatch):
    """Third-party backends register under the entry-point group accelnn.backends."""
    from importlib.metadata import EntryPoint

    ep = EntryPoint("myplug", "accelnn.backends.numpy_backend:NumpyBackend", "accelnn.backends")
    monkeypatch.setattr(backends, "entry_points", lambda group: [ep])
    monkeypatch.setattr(backends, "_plugins", None)  # scan the (patched) entry points anew
    assert "myplug" in accelnn.available_backends()
    assert isinstance(accelnn.get_backend("myplug"), backends.Backend)
    monkeypatch.delitem(backends._instances, "myplug")
    monkeypatch.delitem(backends._status, "myplug")
