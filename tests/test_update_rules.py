"""Optimizer update rules: every fused kernel against its rule's reference.

Each optimizer states its rule once (`accelnn.optimizers.Rule`: a name and a reference update of
one parameter written against `xp`); a backend with kernels runs its kernel for the rule
instead. Here every optimizer (SGD, momentum, Nesterov, Adam, AdamW, RMSprop) runs several
steps through `optimizer.update` on each backend with kernels, and the same steps run through
the reference on NumPy copies: parameters and state must agree within 1e-12 (max relative
error) in float64 and within a few ulps in float32. The errors are reported (`-s`) and recorded
as junit properties.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import accelnn
from accelnn.backends import available_backends, get_backend
from accelnn.optimizers import RULES, SGD, Adam, AdamW, Optimizer, RMSprop, Rule
from tests.conftest import max_rel_err

OPTIMIZERS = {
    "sgd": lambda: SGD(0.1),
    "momentum": lambda: SGD(0.1, momentum=0.9),
    "nesterov": lambda: SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(0.01),
    "adamw": lambda: AdamW(0.01, weight_decay=0.1),
    "rmsprop": lambda: RMSprop(0.01),
}
SHAPES = [(5, 3), (3,), (1, 1), (33, 17), (17,)]
STEPS = 5
F32_ULPS = 4


@pytest.fixture(params=["numba", "cupy"])
def kernel_backend(request):
    """Each backend with update kernels that can run here (the rest skipped with the reason)."""
    status = available_backends()[request.param]
    if not status.available:
        pytest.skip(f"backend {request.param} unavailable: {status.reason}")
    return get_backend(request.param)


def _ulps(a, b) -> int:
    """The largest distance between a and b in units in the last place (float32)."""
    ia, ib = (np.asarray(x, np.float32).view(np.int32).astype(np.int64) for x in (a, b))
    ia, ib = (np.where(i < 0, -(i & 0x7FFFFFFF), i) for i in (ia, ib))  # ordered like floats
    return int(np.max(np.abs(ia - ib)))


def _run(opt, backend, dtype, lrs):
    """STEPS updates through `opt.update` on `backend`, and the same through the rule's
    reference on NumPy: (backend's arrays, reference's arrays), params then state arrays."""
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in lrs]
    params = [backend.asarray(p.copy()) for p in start]
    state = opt.init_state(backend, params)
    ref = [p.copy() for p in start]
    ref_state = opt.init_state(get_backend("numpy"), ref)
    for lr, g in zip(lrs, grads):
        opt.update(backend, params, [backend.asarray(x.copy()) for x in g], state, lr)
        scalars = opt.step_scalars(ref_state, lr)
        arrays = [ref_state[k] for k in opt.state_arrays]
        for p, x, *s in zip(ref, [x.copy() for x in g], *arrays):
            opt.rule.reference(np, p, x, *s, *scalars)
    got = params + [a for k in opt.state_arrays for a in state[k]]
    want = ref + [a for k in opt.state_arrays for a in ref_state[k]]
    assert state.get("t") == ref_state.get("t")
    return [backend.to_numpy(a) for a in got], want


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_kernel_equals_reference(kernel_backend, dtype, name, record_property):
    opt = OPTIMIZERS[name]()
    assert opt.rule.name in kernel_backend.fused_kernels()["optimizer"]
    lrs = [opt.lr, opt.lr, np.float64(opt.lr / 2), opt.lr / 3, opt.lr]  # a schedule's numbers
    got, want = _run(opt, kernel_backend, dtype, lrs)
    if dtype == np.float64:
        err = max(max_rel_err(a, b) for a, b in zip(got, want))
        print(f"{kernel_backend.name} {name} float64: max relative error {err:.1e}")
        record_property("max_rel_err", f"{err:.2e}")
        assert err <= 1e-12
    else:
        ulps = max(_ulps(a, b) for a, b in zip(got, want))
        print(f"{kernel_backend.name} {name} float32: {ulps} ulps at most")
        record_property("max_ulps", ulps)
        assert ulps <= F32_ULPS


def test_numba_kernels_take_the_reference_arguments():
    """A numba update kernel's parameters are its rule's reference's, in order, after xp."""
    pytest.importorskip("numba", reason="numba is not installed")
    from accelnn.backends import numba_kernels

    for name, kernel in numba_kernels.UPDATES.items():
        rule = RULES[name]
        kernel_args = tuple(inspect.signature(kernel.py_func).parameters)
        assert kernel_args == ("p", "g", *rule.states, *rule.scalars), name


def test_rules_fold_their_scalars_once_per_step():
    """The scalars come as Python floats, in the order of the reference's parameters; Adam's
    bias-corrected step size is folded there, and counts the steps."""
    opt, state = AdamW(0.01, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.1), {"t": 2}
    scalars = opt.step_scalars(state, np.float64(0.01))
    assert state["t"] == 3 and all(type(s) is float for s in scalars)
    assert RULES["adam"].scalars == ("lr_t", "beta1", "beta2", "c1", "c2", "eps", "decay")
    assert scalars == pytest.approx((0.01 * np.sqrt(1 - 0.99**3) / (1 - 0.8**3), 0.8, 0.99,
                                     0.2, 0.01 / 0.04, 1e-7, 1 - 0.001), rel=1e-15)
    assert RULES["adam"].states == ("m", "v")
    assert SGD(0.5, momentum=0.9, nesterov=True).step_scalars({}, 0.5) == (0.5, 0.9)
    assert SGD(0.5).rule is RULES["sgd"] and SGD(0.5).step_scalars({}, 0.5) == (0.5,)
    assert RMSprop(0.1, rho=0.75).step_scalars({}, 0.1) == (0.1, 0.75, 0.25, 1e-8)


def test_kernels_leave_other_arrays_to_the_reference(kernel_backend):
    """Arrays the kernels don't take (float16) go through the reference: NumPy's results on
    numba (the same code), within a few float16 ulps on a GPU."""
    opt = OPTIMIZERS["adam"]()
    shapes = [(4, 3), (3,)]
    rng = np.random.default_rng(1)
    start = [rng.standard_normal(s).astype(np.float16) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float16) for s in shapes]
    runs = []
    for be in (kernel_backend, get_backend("numpy")):
        params = [be.asarray(p.copy()) for p in start]
        state = opt.init_state(be, params)
        for _ in range(3):
            opt.update(be, params, [be.asarray(g.copy()) for g in grads], state, opt.lr)
        runs.append([be.to_numpy(p) for p in params])
    tol = 0.0 if kernel_backend.name == "numba" else 4e-3
    assert all(a.dtype == np.float16 and max_rel_err(a, b) <= tol for a, b in zip(*runs))


def test_numba_strided_parameters_take_the_reference():
    """On numba, a parameter that is a strided view is updated in place by the reference."""
    pytest.importorskip("numba", reason="numba is not installed")
    nb = get_backend("numba")
    base = np.ones((4, 6))
    p, g = base[:, ::2], np.full((4, 3), 2.0)
    SGD(0.25).update(nb, [p], [g], {}, 0.25)
    assert (base[:, ::2] == 0.5).all() and (base[:, 1::2] == 1.0).all()


def _sign_sgd(xp, p, g, lr):
    xp.sign(g, out=g)
    g *= lr
    p -= g


def _plus_one(xp, p, g, m, v, *scalars):
    p += 1.0


class _SignSGD(Optimizer):
    """An optimizer with a rule of its own: p <- p - lr sign(g)."""

    name = "signsgd"
    rule = Rule("signsgd", _sign_sgd, 0)

    def step_scalars(self, state, lr):
        return (float(lr),)


class _NotAdam(Adam):
    """A rule of its own under a built-in rule's name: no backend may run its kernel for it."""

    rule = Rule("adam", _plus_one, 2)


@pytest.mark.parametrize("opt", [_SignSGD(0.5), _NotAdam()], ids=["new-rule", "same-name"])
def test_an_optimizer_of_ones_own_runs_its_reference_everywhere(backend, opt):
    X = np.random.default_rng(0).standard_normal((8, 3))
    y = np.arange(8) % 2
    model = accelnn.MLP([3, 4, 2], "tanh", seed=0, dtype="float64", backend=backend)
    before = [w for pair in model.get_weights() for w in pair]
    grads = [g for pair in model.loss_and_grads(X, y)[1] for g in pair]
    model.fit(X, y, optimizer=opt, lr=0.5)
    after = [w for pair in model.get_weights() for w in pair]
    want = [b - 0.5 * np.sign(g) for b, g in zip(before, grads)] if opt.name == "signsgd" \
        else [b + 1.0 for b in before]
    assert max(max_rel_err(a, w) for a, w in zip(after, want)) <= 1e-15
