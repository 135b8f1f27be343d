"""The cupy backend.

On any machine: why cupy cannot run (not installed, no CUDA device, a driver error, a device
that fails, a bad ACCELNN_DEVICE), simulated with a stand-in `cupy` module, and the settings'
parsing. On a machine with a working CUDA device (the `gpu` marker; skipped elsewhere with the
reason): every fused kernel against the NumPy backend's generic code in both dtypes on odd
shapes, a fit equal to NumPy's, no host synchronisation inside a step, the TF32 opt-in, and
zero-copy input. The errors go into the junit report as the `max_rel_err` property.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

import numpy as np
import pytest

import accelnn
from accelnn import backends as registry
from accelnn.activations import ACTIVATIONS, Activation
from accelnn.losses import HEADS
from accelnn.optimizers import SGD, Adam, RMSprop
from tests.conftest import max_rel_err

MODULES = ("cupy_backend", "cupy_kernels", "cupy_blas")


# ------------------------------------------------------------------ a stand-in for cupy
class FakeCUDARuntimeError(RuntimeError):
    """Stands in for cupy_backends.cuda.api.runtime.CUDARuntimeError."""


def fake_cupy(count=1, count_error=None, device_error=None, driver=12040):
    """A `cupy` module with just what CupyBackend.probe touches."""

    def get_device_count():
        if count_error is not None:
            raise count_error
        return count

    class Device:
        def __init__(self, ordinal):
            self.ordinal = ordinal

        def __enter__(self):
            if device_error is not None:
                raise device_error
            return self

        def __exit__(self, *exc):
            return False

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count,
                                    driverGetVersion=lambda: driver,
                                    runtimeGetVersion=lambda: 12090)
    module = types.ModuleType("cupy")
    module.__version__ = "99.0-fake"
    module.cuda = types.SimpleNamespace(runtime=runtime, Device=Device)
    module.arange = np.arange
    return module


@pytest.fixture
def fresh(monkeypatch):
    """An empty registry cache and the cupy backend modules unimported, for this test only;
    `fresh(module)` installs a stand-in `cupy` (None: not installed) and returns the freshly
    imported backend module (None when the import fails). Afterwards the modules and the
    registry are as they were, whether or not they had been imported before."""
    for name in ("_status", "_classes", "_instances"):
        monkeypatch.setattr(registry, name, {})
    monkeypatch.setattr(registry, "_global", None)
    for var in ("ACCELNN_BACKEND", "ACCELNN_DEVICE", "ACCELNN_ALLOW_TF32", "ACCELNN_CUDA_GRAPHS"):
        monkeypatch.delenv(var, raising=False)
    keys = [f"accelnn.backends.{name}" for name in MODULES]
    saved_modules = {k: sys.modules.pop(k) for k in keys if k in sys.modules}
    saved_attrs = {n: vars(registry).pop(n) for n in MODULES if n in vars(registry)}

    def install(module):
        monkeypatch.setitem(sys.modules, "cupy", module)
        try:
            return importlib.import_module("accelnn.backends.cupy_backend")
        except ImportError:
            return None

    yield install
    for key in keys:
        sys.modules.pop(key, None)
    for name in MODULES:
        vars(registry).pop(name, None)
    sys.modules.update(saved_modules)
    vars(registry).update(saved_attrs)


def _cannot_run(reason: str) -> None:
    """Asking for cupy by name fails with `reason`; auto skips it, saying why."""
    status = accelnn.available_backends()["cupy"]
    assert not status.available and status.reason == reason
    with pytest.raises(accelnn.BackendError) as info:
        accelnn.get_backend("cupy")
    assert f"backend 'cupy' cannot run here: {reason}" in str(info.value)
    assert f"  cupy: {reason}" in str(info.value)
    name, why = registry.auto_choice()
    assert name != "cupy" and f"cupy: {reason}" in why


def test_cupy_not_installed(fresh):
    assert fresh(None) is None
    reason = accelnn.available_backends()["cupy"].reason
    assert reason.startswith("not installed")
    _cannot_run(reason)


@pytest.mark.parametrize("driver, note", [
    (0, " (no NVIDIA driver is loaded)"),
    (12020, " (the driver supports CUDA 12.2, cupy 99.0-fake uses CUDA 12.9)"),
])
def test_runtime_error_is_the_reason(fresh, driver, note):
    error = FakeCUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    fresh(fake_cupy(count_error=error, driver=driver))
    _cannot_run(f"installed, but no CUDA device: {error}{note}")


def test_zero_devices(fresh):
    fresh(fake_cupy(count=0))
    _cannot_run("installed, but no CUDA device: the CUDA runtime sees 0 devices")


def test_device_that_fails_its_first_kernel(fresh):
    error = FakeCUDARuntimeError("cudaErrorDevicesUnavailable: CUDA-capable device(s) is/are "
                                 "busy or unavailable")
    fresh(fake_cupy(count=2, device_error=error))
    _cannot_run(f"installed, but CUDA device 0 does not work: FakeCUDARuntimeError: {error}")


@pytest.mark.parametrize("value, reason", [
    ("2", "ACCELNN_DEVICE='2' names no CUDA device: this machine has 2 (ordinals 0 to 1)"),
    ("-1", "ACCELNN_DEVICE='-1' names no CUDA device: this machine has 2 (ordinals 0 to 1)"),
    ("gpu1", "ACCELNN_DEVICE must be a GPU ordinal, an integer from 0 to 1; got 'gpu1'"),
])
def test_bad_accelnn_device_is_the_reason(fresh, monkeypatch, value, reason):
    fresh(fake_cupy(count=2))
    monkeypatch.setenv("ACCELNN_DEVICE", value)
    _cannot_run(reason)


@pytest.mark.parametrize("var", ["ACCELNN_ALLOW_TF32", "ACCELNN_CUDA_GRAPHS"])
def test_bad_switch_is_the_reason(fresh, monkeypatch, var):
    fresh(fake_cupy())
    monkeypatch.setenv(var, "maybe")
    _cannot_run(f"{var} must be 1 or 0 (also true/false, yes/no, on/off), got 'maybe'")


def test_a_working_device_passes_the_probe(fresh, monkeypatch):
    module = fresh(fake_cupy(count=2))
    monkeypatch.setenv("ACCELNN_DEVICE", " 1 ")
    assert module.CupyBackend.probe() is None


@pytest.mark.parametrize("value, count, want", [
    (None, 1, 0), ("", 1, 0), ("0", 1, 0), (" 3", 4, 3), (2, 3, 2)])
def test_device_ordinal(fresh, value, count, want):
    assert fresh(fake_cupy()).device_ordinal(value, count) == want


@pytest.mark.parametrize("value, count", [
    ("1", 1), ("1.0", 2), ("cuda:0", 2), (True, 2), (-1, 2), ("", 0)])
def test_device_ordinal_rejects(fresh, value, count):
    module = fresh(fake_cupy())
    with pytest.raises(ValueError, match="ACCELNN_DEVICE"):
        module.device_ordinal(value, count)
    with pytest.raises(ValueError, match="^device"):
        module.device_ordinal(value, count, "device")


@pytest.mark.parametrize("value, default, want", [
    (None, False, False), ("", False, False), ("0", True, False), ("off", True, False),
    (False, True, False), (None, True, True), (" ", True, True), ("1", False, True),
    (" TRUE ", False, True), ("yes", False, True), (True, False, True)])
def test_flag_setting(fresh, value, default, want):
    assert fresh(fake_cupy()).flag_setting(value, "ACCELNN_CUDA_GRAPHS", default) is want


def test_probe_here_says_why_not_or_passes():
    """The real probe on this machine: available, or a reason that says which part failed."""
    status = accelnn.available_backends()["cupy"]
    if status.available:
        assert accelnn.get_backend("cupy").name == "cupy"
    else:
        assert status.reason.startswith(("not installed", "installed, but", "ACCELNN_"))


# ------------------------------------------------------------------ on a CUDA device
TOL = {"float64": 1e-12, "float32": 1e-6}  # the same dtype on both sides
SHAPES = [(1, 1), (37, 19), (129, 3), (300, 65)]
NP = accelnn.get_backend("numpy")


@pytest.fixture
def gpu():
    status = accelnn.available_backends()["cupy"]
    if not status.available:
        pytest.skip(f"backend cupy unavailable: {status.reason}")
    return accelnn.get_backend("cupy")


def _check(record_property, got, ref, tol):
    err = max_rel_err(got, ref)
    record_property("max_rel_err", f"{err:.2e}")
    assert err <= tol, err


def _inputs(shape, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=scale, size=shape).astype(dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act(gpu, dtype, act, shape, record_property):
    act = ACTIVATIONS[act]
    Z, b = _inputs(shape, dtype), _inputs(shape[1], dtype, 1)
    ref = NP.bias_act(Z.copy(), b, act)
    got = gpu.bias_act(gpu.asarray(Z), gpu.asarray(b), act)
    _check(record_property, gpu.to_numpy(got), ref, TOL[dtype.name])


@pytest.mark.gpu
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "softplus", "sigmoid", "tanh"])
def test_bias_act_keeps_nan(gpu, act):
    Z = np.array([[np.nan, -1.0, 2.0]])
    got = gpu.to_numpy(gpu.bias_act(gpu.asarray(Z), gpu.asarray(np.zeros(3)),
                                    ACTIVATIONS[act]))
    assert np.isnan(got[0, 0]) and np.isfinite(got[0, 1:]).all()


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_act_grad(gpu, dtype, act, shape, record_property):
    act = ACTIVATIONS[act]
    A = NP.bias_act(_inputs(shape, dtype), np.zeros(shape[1], dtype), act)  # a layer output
    dA = _inputs(shape, dtype, 2, 1.0)
    ref = NP.act_grad(dA.copy(), A, act)
    got = gpu.act_grad(gpu.asarray(dA), gpu.asarray(A), act)
    _check(record_property, gpu.to_numpy(got), ref, TOL[dtype.name])


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (400, 1), (33, 31), (1000, 70),
                                   (512, 2049)])
def test_bias_grad(gpu, dtype, shape, record_property):
    dZ = _inputs(shape, dtype)
    ref = NP.bias_grad(dZ, np.empty(shape[1], dtype))
    got = gpu.bias_grad(gpu.asarray(dZ), gpu.empty(shape[1], dtype))
    _check(record_property, gpu.to_numpy(got), ref, 10 * TOL[dtype.name])


def _targets(head, shape, seed=3):
    rng = np.random.default_rng(seed)
    if head == "identity":
        return rng.normal(size=shape)
    if head == "sigmoid":
        return rng.integers(0, 2, shape).astype(float)
    return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]


@pytest.mark.gpu
@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (130, 10), (33, 40), (65, 257)])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_loss_delta(gpu, dtype, head, shape, in_place, record_property):
    head = HEADS[head]
    Z, Y = _inputs(shape, dtype), _targets(head.name, shape).astype(dtype)
    ref_out = Z.copy()
    ref_loss = NP.loss_delta(ref_out, Y, head, ref_out)
    Zd, Yd = gpu.asarray(Z), gpu.asarray(Y)
    out = Zd if in_place else gpu.empty(shape, dtype)
    loss = gpu.loss_delta(Zd, Yd, head, out)
    assert loss.shape == () and isinstance(loss, gpu.xp.ndarray)
    if not in_place:
        assert (gpu.to_numpy(Zd) == Z).all()
    err = max(max_rel_err(gpu.to_numpy(loss), ref_loss),
              max_rel_err(gpu.to_numpy(out), ref_out))
    record_property("max_rel_err", f"{err:.2e}")
    assert err <= 10 * TOL[dtype.name]


OPTIMIZERS = {
    "sgd": lambda: SGD(0.1),
    "momentum": lambda: SGD(0.1, momentum=0.9),
    "nesterov": lambda: SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(0.01),
    "adamw": lambda: Adam(0.01, weight_decay=0.1),
    "rmsprop": lambda: RMSprop(0.01),
}
PARAM_SHAPES = [(5, 3), (3,), (3, 17), (17,)]


def _run_updates(backend, name, dtype, steps=4):
    opt = OPTIMIZERS[name]()
    params = [backend.asarray(_inputs(s, dtype, i, 1.0)) for i, s in enumerate(PARAM_SHAPES)]
    state = opt.init_state(backend, params)
    for step in range(steps):
        grads = [backend.asarray(_inputs(s, dtype, 10 * step + i, 1.0))
                 for i, s in enumerate(PARAM_SHAPES)]
        opt.update(backend, params, grads, state, opt.lr)
    arrays = params + [a for v in state.values() if isinstance(v, list) for a in v]
    return [backend.to_numpy(a) for a in arrays]


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_updates(gpu, dtype, name, record_property):
    ref = _run_updates(NP, name, dtype)
    got = _run_updates(gpu, name, dtype)
    err = max(max_rel_err(g, r) for g, r in zip(got, ref))
    record_property("max_rel_err", f"{err:.2e}")
    assert err <= TOL[dtype.name]


@pytest.mark.gpu
def test_add_scaled_and_sq_norm(gpu, dtype, record_property):
    y, x = _inputs((37, 19), dtype), _inputs((37, 19), dtype, 1)
    ref = NP.add_scaled(y.copy(), x, 0.37)
    got = gpu.to_numpy(gpu.add_scaled(gpu.asarray(y), gpu.asarray(x), 0.37))
    _check(record_property, got, ref, TOL[dtype.name])
    exact = np.sum(x.astype(np.float64) ** 2)  # the cupy sum accumulates in float64
    assert max_rel_err(gpu.to_numpy(gpu.sq_norm(gpu.asarray(x))), exact) <= \
        np.finfo(dtype).eps


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["nn", "tn", "nt", "strided", "empty", "k0"])
def test_matmul_layouts(gpu, dtype, kind, record_property):
    """Transposed views go to cuBLAS as they are; a strided view takes CuPy's matmul; empty
    products give an empty or all-zero result."""
    A, dZ, W = (_inputs(s, dtype, i) for i, s in enumerate([(37, 19), (37, 23), (19, 23)]))
    Ad, dZd, Wd = (gpu.asarray(x) for x in (A, dZ, W))
    a, b, ad, bd = {"nn": (A, W, Ad, Wd), "tn": (A.T, dZ, Ad.T, dZd),
                    "nt": (dZ, W.T, dZd, Wd.T), "strided": (A[:, ::2], W[::2], Ad[:, ::2],
                                                              Wd[::2]),
                    "empty": (A[:0], W, Ad[:0], Wd), "k0": (A[:, :0], W[:0], Ad[:, :0],
                                                           Wd[:0])}[kind]
    ref = a.astype(np.float64) @ b.astype(np.float64)
    out = gpu.empty(ref.shape, dtype)
    out.fill(np.nan)
    got = gpu.to_numpy(gpu.matmul(ad, bd, out))
    if ref.size:
        _check(record_property, got, ref, TOL[dtype.name])
    assert got.shape == ref.shape and (ref.size == 0 or np.isfinite(got).all())


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adamw"])
def test_fit_equals_numpy(gpu, optimizer, record_property):
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(83, 6)), rng.integers(0, 4, 83)
    weights = {}
    for be in (NP, gpu):
        model = accelnn.MLP([6, 17, 9, 4], ["tanh", "relu"], l2=0.01, seed=7,
                            dtype="float64", backend=be)
        hist = model.fit(X, y, epochs=3, batch_size=16, optimizer=optimizer, lr=0.05)
        weights[be.name] = ([w for pair in model.get_weights() for w in pair], hist["loss"])
    (ref_w, ref_loss), (got_w, got_loss) = weights["numpy"], weights["cupy"]
    err = max([max_rel_err(g, r) for g, r in zip(got_w, ref_w)]
              + [max_rel_err(got_loss, ref_loss)])
    record_property("max_rel_err", f"{err:.2e}")
    assert err <= TOL["float64"]


@pytest.mark.gpu
@pytest.mark.parametrize("graphs", [False, True])
def test_steps_leave_the_loss_on_the_device_without_synchronising(gpu, graphs):
    """Kernel by kernel, and (graphs) while the step is recorded and then replayed."""
    from accelnn.backends.cupy_backend import CupyBackend

    cupyx = pytest.importorskip("cupyx")
    if not hasattr(cupyx, "allow_synchronize"):
        pytest.skip("this cupyx has no allow_synchronize to detect synchronisation")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 20)), rng.integers(0, 10, 64)
    be = CupyBackend(graphs=graphs)
    assert be.graphs is graphs and be.info()["cuda_graphs"].startswith("on" if graphs else "off")
    model = accelnn.MLP([20, 32, 10], "relu", l2=0.01, seed=0, backend=be)
    step = model.step_function(X, y, optimizer="adam")
    step()  # compiles the kernels
    be.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with cupyx.allow_synchronize(False):
            losses = [step() for _ in range(3)]
    assert all(isinstance(loss, be.xp.ndarray) and loss.shape == () for loss in losses)
    assert np.isfinite(float(losses[-1]))


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adamw", "rmsprop"])
def test_cuda_graph_replays_equal_kernel_by_kernel(gpu, dtype, optimizer):
    """Bit for bit: the same kernels in the same order, recorded once per batch shape (83 rows
    in batches of 16 leave a last batch of 3) and replayed; losses and weights after 4 epochs."""
    from accelnn.backends.cupy_backend import CupyBackend

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(83, 6)), rng.integers(0, 4, 83)
    results = []
    for graphs in (False, True):
        model = accelnn.MLP([6, 9, 7, 4], "tanh", l2=0.02, seed=1, dtype=dtype,
                            backend=CupyBackend(graphs=graphs))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a failed recording fails the test
            hist = model.fit(X, y, epochs=4, batch_size=16, optimizer=optimizer, lr=0.05)
        results.append(([w for pair in model.get_weights() for w in pair], hist["loss"]))
    (eager_w, eager_loss), (graph_w, graph_loss) = results
    assert graph_loss == eager_loss
    assert all(np.array_equal(g, e) for g, e in zip(graph_w, eager_w))


@pytest.mark.gpu
def test_a_step_that_cannot_be_recorded_runs_kernel_by_kernel(gpu):
    from accelnn.backends.cupy_backend import CupyBackend

    be = CupyBackend(graphs=True)
    x = be.asarray(np.arange(6.0))

    def syncs(a):  # float() copies to the host: not allowed while recording
        return a * float(a.sum())

    fn = be.replayed(syncs)
    assert float(fn(x)[1]) == 15.0  # the warm-up runs it as it is
    with pytest.warns(RuntimeWarning, match="could not be recorded.*kernel by kernel"):
        assert float(fn(x)[2]) == 30.0
    assert float(fn(x)[3]) == 45.0


@pytest.mark.gpu
def test_tf32_is_off_by_default_and_an_explicit_opt_in(gpu, monkeypatch, record_property):
    from accelnn.backends.cupy_backend import CupyBackend

    monkeypatch.delenv("ACCELNN_ALLOW_TF32", raising=False)
    A, B = _inputs((256, 1024), np.float32, 0, 1.0), _inputs((1024, 256), np.float32, 1, 1.0)
    exact = A.astype(np.float64) @ B.astype(np.float64)

    def err(be):
        out = be.matmul(be.asarray(A), be.asarray(B), be.empty((256, 256), np.float32))
        return max_rel_err(be.to_numpy(out), exact)

    off = CupyBackend()
    assert off.info()["tf32"] == "off" and not off.tf32
    err_off = err(off)
    assert err_off < 1e-5
    monkeypatch.setenv("ACCELNN_ALLOW_TF32", "1")
    on = CupyBackend()
    if not on.tf32:
        assert on.info()["tf32"].startswith("off (asked for")
        pytest.skip("TF32 needs compute capability 8.0")
    err_on = err(on)
    record_property("max_rel_err", f"off {err_off:.1e}, on {err_on:.1e}")
    assert on.info()["tf32"] == "on" and err_on > 10 * err_off
    assert err(off) < err_on / 10  # each backend sets the compute type of its own GEMMs


@pytest.mark.gpu
def test_asarray_without_copies_and_to_numpy(gpu):
    cupy = gpu.xp
    x = cupy.arange(12.0).reshape(3, 4)
    assert gpu.asarray(x).data.ptr == x.data.ptr

    class Producer:  # DLPack only, as other CUDA libraries hand arrays over
        def __dlpack__(self, **kwargs):
            return x.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return x.__dlpack_device__()

    assert gpu.asarray(Producer()).data.ptr == x.data.ptr
    host = np.arange(12.0).reshape(4, 3).T  # not contiguous
    got = gpu.asarray(host, np.float32)
    assert got.flags.c_contiguous and got.dtype == np.float32
    back = gpu.to_numpy(got)
    assert isinstance(back, np.ndarray) and (back == host).all()
    with pytest.raises(TypeError, match="must hold numbers"):
        gpu.asarray(np.array([["a", "b"]]))


@pytest.mark.gpu
def test_accelnn_device_out_of_range(gpu, monkeypatch):
    from accelnn.backends.cupy_backend import CupyBackend

    count = gpu.xp.cuda.runtime.getDeviceCount()
    monkeypatch.setenv("ACCELNN_DEVICE", str(count))
    with pytest.raises(ValueError, match="names no CUDA device"):
        CupyBackend()
    assert CupyBackend(device=0).device == "cuda:0"
    info = gpu.info()
    assert {"gpu", "compute_capability", "memory", "cuda_runtime", "cuda_driver"} <= set(info)


@pytest.mark.gpu
def test_what_the_kernels_do_not_cover_takes_the_generic_path(gpu, record_property):
    Z, b = _inputs((9, 5), np.float16), _inputs(5, np.float16, 1)
    relu = ACTIVATIONS["relu"]
    ref = NP.bias_act(Z.copy(), b, relu)
    got = gpu.to_numpy(gpu.bias_act(gpu.asarray(Z), gpu.asarray(b), relu))
    assert got.dtype == np.float16 and max_rel_err(got, ref) <= 1e-3
    custom = Activation("relu", lambda xp, Z: xp.abs(Z, out=Z), relu.grad, "he")
    Z64 = _inputs((9, 5), np.float64)
    got = gpu.to_numpy(gpu.bias_act(gpu.asarray(Z64), gpu.asarray(np.zeros(5)), custom))
    assert (got == np.abs(Z64)).all()
