"""Sample and class weights: integer weights against repeated rows, zero weights against
dropped rows (float64, full batch, 1e-12), the mini-batch definition against a hand-written
loop, class_weight against scikit-learn's compute_class_weight, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn
from tests.conftest import max_rel_err

HEADS = ["softmax", "sigmoid", "identity"]


def _data(kind, m=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 3))
    if kind == "softmax":
        return X, rng.integers(0, 3, m), 3
    if kind == "sigmoid":
        return X, rng.integers(0, 2, m), 1
    return X, rng.normal(size=(m, 2)), 2


def _model(kind, n_out, backend, l2=0.4):
    return accelnn.MLP([3, 5, n_out], "tanh", kind, l2=l2, seed=0, dtype="float64",
                       backend=backend.name)


def _flat(pairs):
    return np.concatenate([a.ravel() for pair in pairs for a in pair])


@pytest.mark.parametrize("kind", HEADS)
def test_integer_weights_equal_repeated_rows_and_zero_weights_dropped_rows(backend, kind):
    X, y, n_out = _data(kind)
    w = np.random.default_rng(1).integers(0, 4, len(X))
    w[:3] = (0, 2, 3)
    model = _model(kind, n_out, backend)
    weighted = model.loss_and_grads(X, y, sample_weight=w)
    repeated = model.loss_and_grads(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0))
    err = max(max_rel_err(weighted[0], repeated[0]),
              max_rel_err(_flat(weighted[1]), _flat(repeated[1])))
    print(f"{backend.name} {kind}: weighted vs repeated rows, max rel err {err:.2e}")
    assert err < 1e-12
    keep = w > 0
    dropped = model.loss_and_grads(X[keep], y[keep], sample_weight=w[keep])
    assert max_rel_err(_flat(weighted[1]), _flat(dropped[1])) < 1e-12


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", HEADS)
def test_a_weighted_fit_equals_the_fit_on_repeated_rows(backend, kind, optimizer):
    """Full batch: every step of the weighted fit is the step on the repeated rows."""
    if optimizer == "lbfgs":
        pytest.importorskip("scipy", reason="optimizer='lbfgs' needs scipy")
    X, y, n_out = _data(kind)
    w = np.random.default_rng(2).integers(0, 4, len(X))
    lr = {} if optimizer == "lbfgs" else {"lr": 0.05}
    a, b = _model(kind, n_out, backend), _model(kind, n_out, backend)
    ha = a.fit(X, y, epochs=15, optimizer=optimizer, sample_weight=w, **lr)
    hb = b.fit(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0), epochs=15,
               optimizer=optimizer, **lr)
    err = max_rel_err(_flat(a.get_weights()), _flat(b.get_weights()))
    print(f"{backend.name} {kind} {optimizer}: weights after 15 epochs, rel err {err:.2e}")
    assert err < 1e-12 and ha.epochs == hb.epochs
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-12)


def test_equal_weights_are_the_unweighted_fit_exactly(backend):
    X, y, _ = _data("softmax")
    a, b = _model("softmax", 3, backend), _model("softmax", 3, backend)
    a.fit(X, y, epochs=3, batch_size=8, optimizer="adam", sample_weight=np.full(len(X), 2.5))
    b.fit(X, y, epochs=3, batch_size=8, optimizer="adam")
    assert np.array_equal(_flat(a.get_weights()), _flat(b.get_weights()))


def test_mini_batches_are_each_weighted_by_their_own_weights():
    """Keras' definition: a step on the batch's weighted mean; a weightless batch is skipped;
    the epoch's loss counts each batch by its share of the total weight."""
    X, y, _ = _data("softmax", m=20)
    w = np.random.default_rng(4).uniform(0.5, 2.0, 20)
    w[8:12] = 0.0  # the third batch of 4 rows weighs nothing
    model = _model("softmax", 3, accelnn.get_backend("numpy"), l2=0.1)
    ref = _model("softmax", 3, accelnn.get_backend("numpy"), l2=0.1)
    hist = model.fit(X, y, epochs=1, batch_size=4, shuffle=False, lr=0.2, sample_weight=w)
    total = 0.0
    for lo in range(0, 20, 4):
        wb = w[lo:lo + 4]
        if not wb.sum():
            continue
        loss, grads = ref.loss_and_grads(X[lo:lo + 4], y[lo:lo + 4], sample_weight=wb)
        total += loss * wb.sum() / w.sum()
        ref.set_weights([(W - 0.2 * dW, b - 0.2 * db)
                         for (W, b), (dW, db) in zip(ref.get_weights(), grads)])
    assert max_rel_err(_flat(model.get_weights()), _flat(ref.get_weights())) < 1e-12
    assert hist["loss"][0] == pytest.approx(total, rel=1e-12)


def test_weighted_validation_data_and_split():
    X, y, _ = _data("softmax", m=40)
    w = np.random.default_rng(5).uniform(0.0, 2.0, 40)
    model = _model("softmax", 3, accelnn.get_backend("numpy"))
    hist = model.fit(X[:30], y[:30], epochs=2, sample_weight=w[:30],
                     validation_data=(X[30:], y[30:], w[30:]), metrics=["accuracy"])
    assert hist["val_loss"][-1] == pytest.approx(model.loss(X[30:], y[30:], w[30:]),
                                                 rel=1e-12)
    assert hist["val_accuracy"][-1] == model.evaluate(X[30:], y[30:], sample_weight=w[30:],
                                                      metrics="accuracy")[1]
    with pytest.raises(ValueError, match="validation_data's sample_weight must be >= 0"):
        model.fit(X[:30], y[:30], validation_data=(X[30:], y[30:], -w[30:]))
    with pytest.raises(ValueError, match="held out all have weight zero"):
        model.fit(X, y, validation_split=0.5, sample_weight=np.r_[np.ones(1), np.zeros(39)])


@pytest.mark.parametrize("labels", [np.array([0, 1, 2]), np.array(["ant", "bee", "cat"])])
def test_class_weight_balanced_and_dict(labels):
    compute = pytest.importorskip("sklearn.utils.class_weight").compute_class_weight
    rng = np.random.default_rng(6)
    idx = rng.choice(3, 40, p=[0.6, 0.3, 0.1])
    y, X = labels[idx], rng.normal(size=(40, 3))
    sw = rng.uniform(0.5, 1.5, 40)
    backend = accelnn.get_backend("numpy")
    per_class = compute("balanced", classes=labels, y=y, sample_weight=sw)
    a, b = _model("softmax", 3, backend), _model("softmax", 3, backend)
    a.fit(X, y, epochs=3, class_weight="balanced", sample_weight=sw)
    b.fit(X, y, epochs=3, sample_weight=sw * per_class[idx])
    assert max_rel_err(_flat(a.get_weights()), _flat(b.get_weights())) < 1e-12
    c, d = _model("softmax", 3, backend), _model("softmax", 3, backend)
    c.fit(X, y, epochs=3, class_weight={labels[0]: 3.0, labels[2]: 0.5})
    d.fit(X, y, epochs=3, sample_weight=np.array([3.0, 1.0, 0.5])[idx])
    assert max_rel_err(_flat(c.get_weights()), _flat(d.get_weights())) < 1e-12


def test_class_weight_is_refused_where_it_means_nothing():
    X, y, _ = _data("identity")
    reg = accelnn.MLP([3, 2], output="identity", backend="numpy")
    with pytest.raises(ValueError, match="class_weight needs a single-label classifier"):
        reg.fit(X, y, class_weight="balanced")
    multi = accelnn.MLP([3, 2], output="sigmoid", backend="numpy")
    with pytest.raises(ValueError, match="class_weight needs a single-label classifier"):
        multi.fit(X, (y > 0).astype(int), class_weight={0: 2.0})
    clf = accelnn.MLP([3, 3], output="softmax", backend="numpy")
    with pytest.raises(ValueError, match="class_weight must be 'balanced' or a dict"):
        clf.fit(X, np.arange(30) % 3, class_weight=[1, 2, 3])
    with pytest.raises(ValueError, match="leaves every sample with weight zero"):
        clf.fit(X, np.arange(30) % 3, class_weight={0: 0, 1: 0, 2: 0})


def test_one_rank_data_parallel_fit_takes_sample_weights():
    pytest.importorskip("mpi4py", reason="data-parallel training needs mpi4py")
    from mpi4py import MPI

    from accelnn import distributed

    X, y, _ = _data("softmax", m=40)
    w = np.random.default_rng(7).integers(0, 3, 40).astype(float)
    model = _model("softmax", 3, accelnn.get_backend("numpy"))
    ref = _model("softmax", 3, accelnn.get_backend("numpy"))
    distributed.fit(model, X, y, comm=MPI.COMM_SELF, epochs=3, batch_size=8, lr=0.1,
                    sample_weight=w)
    ref.fit(X, y, epochs=3, batch_size=8, lr=0.1, sample_weight=w)
    assert max_rel_err(_flat(model.get_weights()), _flat(ref.get_weights())) < 1e-13
