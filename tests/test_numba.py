"""The numba backend's fused kernels and whole-step fast path against the generic NumPy path.

Every kernel is run on the numba backend and on the NumPy backend (the base-class defaults) on
the same inputs; float64 must agree to 1e-12 and float32 to 1e-5 (max relative error, reported
through `record_property`). Whole-model agreement over every backend is in test_agreement.py.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed: the numba backend is skipped")

import accelnn  # noqa: E402
from accelnn.activations import ACTIVATIONS  # noqa: E402
from accelnn.backends import get_backend  # noqa: E402
from accelnn.backends.base import Backend  # noqa: E402
from accelnn.backends.numba_backend import NumbaBackend  # noqa: E402
from accelnn.losses import HEADS  # noqa: E402
from accelnn.network import StepSpec  # noqa: E402
from accelnn.optimizers import SGD, Adam, Optimizer, RMSprop  # noqa: E402
from tests.conftest import max_rel_err  # noqa: E402

TOL = {np.dtype("float64"): 1e-12, np.dtype("float32"): 1e-5}
SHAPES = [(1, 1), (1, 6), (9, 1), (33, 17)]


@pytest.fixture(scope="module")
def nb():
    return get_backend("numba")


@pytest.fixture(scope="module")
def ref():
    return get_backend("numpy")


def _check(record_property, what, got, want, dtype):
    err = max_rel_err(got, want)
    record_property(what, err)
    assert err <= TOL[np.dtype(dtype)], f"{what}: max relative error {err:.3g}"


def _data(shape, dtype, seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _pair(a):
    """Two independent copies: one for each backend."""
    return a.copy(), a.copy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_and_act_grad(nb, ref, dtype, shape, act, record_property):
    a = ACTIVATIONS[act]
    Z, b = _data(shape, dtype), _data(shape[1], dtype, 1)
    got, want = _pair(Z)
    nb.bias_act(got, b, a)
    ref.bias_act(want, b, a)
    _check(record_property, f"bias_act {act}", got, want, dtype)
    dA = _data(shape, dtype, 2)
    got_d, want_d = _pair(dA)
    nb.act_grad(got_d, want, a)
    ref.act_grad(want_d, want, a)
    _check(record_property, f"act_grad {act}", got_d, want_d, dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_bias_grad(nb, ref, dtype, shape, record_property):
    dZ = _data(shape, dtype)
    got, want = np.empty(shape[1], dtype), np.empty(shape[1], dtype)
    nb.bias_grad(dZ, got)
    ref.bias_grad(dZ, want)
    _check(record_property, "bias_grad", got, want, dtype)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus"])
def test_float32_transcendentals(nb, act, record_property):
    """float32 tanh/sigmoid/softplus (polynomial approximations, vectorized) against float64
    NumPy over the whole range, including tiny, saturated and special arguments."""
    z = np.r_[np.linspace(-100, 100, 20001), np.geomspace(1e-30, 1e-2, 200),
              -np.geomspace(1e-30, 1e-2, 200), 0.0].astype(np.float32)
    got = z.reshape(1, -1).copy()
    nb.k.activate(got, nb.k.ACT_CODES[act])
    want = z.astype(np.float64).reshape(1, -1)
    get_backend("numpy").bias_act(want, np.zeros(1), ACTIVATIONS[act])
    _check(record_property, f"float32 {act}", got, want, np.float32)
    special = np.array([[np.nan, np.inf, -np.inf]], np.float32)
    nb.k.activate(special, nb.k.ACT_CODES[act])
    assert np.isnan(special[0, 0]) and not np.isnan(special[0, 1:]).any()


def _targets(head, shape, dtype):
    rng = np.random.default_rng(3)
    if head == "softmax":
        return np.eye(shape[1], dtype=dtype)[rng.integers(0, shape[1], shape[0])]
    if head == "sigmoid":
        return rng.integers(0, 2, shape).astype(dtype)
    return _data(shape, dtype, 3)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("in_place", [True, False])
def test_loss_delta_and_output(nb, ref, dtype, shape, head, in_place, record_property):
    h = HEADS[head]
    Z, Y = _data(shape, dtype, scale=30.0), _targets(head, shape, dtype)  # large logits
    Z[0, 0] = 800.0 if dtype == np.float64 else 80.0  # exp would overflow without care
    if head == "sigmoid":
        Y[0, 0] = 0.0  # a loss of ~Z[0, 0], not ~exp(-Z[0, 0]) (no relative error near 0)
    got_z, want_z = _pair(Z)
    got_out = got_z if in_place else np.empty_like(Z)
    want_out = want_z if in_place else np.empty_like(Z)
    got_loss = nb.loss_delta(got_z, Y, h, got_out)
    want_loss = ref.loss_delta(want_z, Y, h, want_out)
    assert np.isfinite(got_loss)
    _check(record_property, f"loss {head}", got_loss, want_loss, dtype)
    _check(record_property, f"delta {head}", got_out, want_out, dtype)
    got_a, want_a = _pair(Z)
    _check(record_property, f"output {head}", nb.output(got_a, h), ref.output(want_a, h), dtype)


def test_loss_delta_broadcasts_one_label_column(nb, ref, dtype, record_property):
    """A sigmoid head with several outputs and one column of 0/1 labels: Y broadcasts over the
    outputs, as in Z - Y (the kernel must not index a column Y lacks)."""
    Z, Y = _data((9, 3), dtype), _targets("sigmoid", (9, 1), dtype)
    got, want = np.empty_like(Z), np.empty_like(Z)
    got_loss = nb.loss_delta(Z.copy(), Y, HEADS["sigmoid"], got)
    want_loss = ref.loss_delta(Z.copy(), Y, HEADS["sigmoid"], want)
    _check(record_property, "broadcast loss", got_loss, want_loss, dtype)
    _check(record_property, "broadcast delta", got, want, dtype)


OPTIMIZERS = {"sgd": SGD(0.1), "momentum": SGD(0.1, momentum=0.9),
              "nesterov": SGD(0.1, momentum=0.9, nesterov=True), "adam": Adam(0.01),
              "adamw": Adam(0.01, weight_decay=0.1), "rmsprop": RMSprop(0.01)}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_updates(nb, ref, dtype, name, record_property):
    opt = OPTIMIZERS[name]
    shapes = [(1, 1), (5, 3), (3,), (1,)]
    params = {be.name: [_data(s, dtype, i) for i, s in enumerate(shapes)] for be in (nb, ref)}
    states = {be.name: opt.init_state(be, params[be.name]) for be in (nb, ref)}
    for step in range(3):
        for be in (nb, ref):
            grads = [_data(s, dtype, 10 + step + i) for i, s in enumerate(shapes)]
            opt.update(be, params[be.name], grads, states[be.name], opt.lr)
    for i in range(len(shapes)):
        _check(record_property, f"{name} param {i}", params["numba"][i], params["numpy"][i],
               dtype)


def test_non_contiguous_and_other_dtypes_fall_back(nb, ref, record_property):
    """Views and dtypes the kernels don't take go through the generic path, same results."""
    base = _data((8, 10), np.float64)
    relu = ACTIVATIONS["relu"]
    got, want = base[:, ::2], base.copy()[:, ::2]  # strided views, written in place
    nb.bias_act(got, np.ones(5), relu)
    ref.bias_act(want, np.ones(5), relu)
    _check(record_property, "bias_act strided", got, want, np.float64)
    dZ = base.T
    got_b, want_b = np.empty(8), np.empty(8)
    _check(record_property, "bias_grad transposed", nb.bias_grad(dZ, got_b),
           ref.bias_grad(dZ, want_b), np.float64)
    Z16 = base.astype(np.float16)
    got16, want16 = _pair(Z16)
    nb.bias_act(got16, np.ones(10, np.float16), relu)
    ref.bias_act(want16, np.ones(10, np.float16), relu)
    assert got16.dtype == np.float16 and np.array_equal(got16, want16)


# ------------------------------------------------------------------ whole-step fast path
NETS = [  # (layer sizes, hidden activation, output, optimizer, l2)
    ([2, 4, 1], "relu", "sigmoid", "sgd", 0.0),
    ([2, 4, 1], "tanh", "sigmoid", "sgd", 0.0),
    ([4, 6, 5, 3], ["sigmoid", "softplus"], "softmax", "momentum", 0.01),
    ([3, 5, 2], "tanh", "sigmoid", "rmsprop", 0.0),
    ([3, 5, 4], "leaky_relu", "softmax", "adam", 0.1),
    ([6, 7, 3, 2], "leaky_relu", "identity", "nesterov", 0.01),
    ([5, 8, 8, 3], ["identity", "relu"], "softmax", "adamw", 0.0),
]


def _train(sizes, act, out, opt, l2, backend, dtype="float64", steps=10, m=40):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((m, sizes[0]))
    if out == "identity":
        y = rng.standard_normal((m, sizes[-1]))
    elif out == "sigmoid" and sizes[-1] > 1:  # multi-label: a 0/1 column per output
        y = rng.integers(0, 2, (m, sizes[-1]))
    else:
        y = rng.integers(0, max(2, sizes[-1]), m)
    model = accelnn.MLP(sizes, act, out, l2=l2, seed=1, dtype=dtype, backend=backend)
    step = model.step_function(X, y, optimizer=opt, lr=0.05)
    losses = [float(step()) for _ in range(steps)]
    return np.array(losses), np.concatenate(
        [np.r_[W.ravel(), b] for W, b in model.get_weights()])


@pytest.mark.parametrize("net", NETS, ids=lambda n: "-".join(map(str, n[0])))
def test_fused_step_equals_shared_path(nb, net, monkeypatch, record_property):
    sizes, act, out, opt, l2 = net
    model = accelnn.MLP(sizes, act, out, l2=l2, backend=nb)
    spec = StepSpec(model.layer_sizes, model.activations, model.head, l2,
                    accelnn.optimizers.get_optimizer(opt), model.dtype)
    assert nb.fused_train_step(spec) is not None, "the fast path must cover this network"
    fused_loss, fused_w = _train(*net, nb)
    numpy_loss, numpy_w = _train(*net, "numpy")
    monkeypatch.setattr(NumbaBackend, "fused_train_step", Backend.fused_train_step)
    shared_loss, shared_w = _train(*net, NumbaBackend())
    for what, got, want in (("weights vs numpy", fused_w, numpy_w),
                            ("weights vs numba shared", fused_w, shared_w),
                            ("losses vs numpy", fused_loss, numpy_loss)):
        err = max_rel_err(got, want)
        record_property(what, err)
        assert err <= 1e-12, f"{what}: max relative error {err:.3g} after 10 steps"


@pytest.mark.parametrize("act, out", [("relu", "sigmoid"), ("tanh", "sigmoid"),
                                      ("sigmoid", "softmax"), ("softplus", "identity")])
def test_fused_step_float32_and_odd_batches(nb, act, out, record_property):
    """float32 (with the polynomial tanh/exp/log1p) within 1e-5 of float64 NumPy after 10
    steps, on batches of 1, 3 and 400 rows."""
    sizes = [2, 4, 3] if out == "softmax" else [2, 4, 1]
    for m in (1, 3, 400):
        got_loss, got = _train(sizes, act, out, "sgd", 0.0, nb, "float32", m=m)
        want_loss, want = _train(sizes, act, out, "sgd", 0.0, "numpy", "float64", m=m)
        for what, err in (("weights", max_rel_err(got, want)),
                          ("losses", max_rel_err(got_loss, want_loss))):
            record_property(f"float32 {act} batch {m} {what}", err)
            assert err <= 1e-5, f"{what}: {err:.3g}"


class _Frozen(Optimizer):
    """An optimizer that leaves the weights alone."""

    name = "frozen"

    def update(self, backend, params, grads, state, lr):
        pass


def test_fused_step_leaves_the_update_to_other_optimizers(nb):
    """With an optimizer other than plain SGD the kernel must not touch the weights, not even
    by p - 0 * g (a NaN gradient would then poison them)."""
    model = accelnn.MLP([2, 4, 1], "tanh", "sigmoid", seed=1, backend=nb)
    opt = _Frozen(0.1)
    step = nb.fused_train_step(StepSpec(model.layer_sizes, model.activations, model.head, 0.0,
                                        opt, model.dtype))
    before = [p.copy() for p in model.state.params]
    X, Y = np.array([[np.nan, 1.0], [0.5, 2.0]]), np.array([[1.0], [0.0]])
    params, grads = model.state.params, model.state.grads
    loss = step(params, grads, opt.init_state(nb, params), X, Y, 0.1)
    assert np.isnan(loss) and np.isnan(model.state.grads[0]).any()
    for p, q in zip(model.state.params, before):
        assert np.array_equal(p, q)


def test_fused_step_declines_what_it_does_not_cover(nb):
    def spec(sizes, dtype="float64", act="relu"):
        model = accelnn.MLP(sizes, act, "softmax", backend="numpy")
        return StepSpec(model.layer_sizes, model.activations, model.head, 0.0, SGD(0.1),
                        np.dtype(dtype))

    assert nb.fused_train_step(spec([784, 256, 10])) is not None  # the BLAS step
    assert nb.fused_train_step(spec([4, 3])) is not None  # no hidden layer
    assert nb.fused_train_step(spec([4, 5, 3], "float16")) is None
    assert nb.fused_train_epoch(spec([4, 5, 3], "float16")) is None
    assert nb.fused_train_step(spec([2, 4, 1], act="tanh")) is not None


def test_info_reports_threads_and_blas(nb):
    info = nb.info()
    assert info["numba"] and info["num_threads"] >= 1 and info["threading_layer"]
    assert "kernel" in info["blas"] or info["blas"].startswith("unknown")


@pytest.mark.parametrize("sizes", [[3, 8, 8, 2], [784, 64, 10]])
def test_compiled_step_takes_read_only_data(sizes):
    """A kernel specialised for read-only arrays failed to type (mnist fit_epoch float64 in the
    bench, whose data is frozen); read-only X and y now train as writable ones do."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, sizes[0]))
    y = rng.integers(0, sizes[-1], 64)
    frozen_X, frozen_y = X.copy(), y.copy()
    frozen_X.setflags(write=False)
    frozen_y.setflags(write=False)
    losses = []
    for data in ((X, y), (frozen_X, frozen_y)):
        model = accelnn.MLP(sizes, seed=0, dtype="float64", backend="numba")
        step = model.step_function(*data, optimizer="adam")
        losses.append([float(step()) for _ in range(3)])
    assert losses[0] == losses[1]
