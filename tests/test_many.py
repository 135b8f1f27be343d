"""fit_many against its oracle, the single-model fit: every member of a stacked fit must end
as `MLP.fit` with the same settings leaves it (float64: weights, optimizer state, histories
within 1e-12; RNG, counts and stopping epochs equal), on every backend (the numba backend
through its compiled epoch, the others through the generic batched path), for every
optimizer, with sample weights, folds, schedules, early stopping, metrics and callbacks."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import accelnn
from accelnn import stacked
from tests.conftest import max_rel_err

OPTIMIZERS = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adam": 0.005,
              "adamw": 0.005, "rmsprop": 0.002}


def _data(m=203, n=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, n)), rng.integers(0, classes, m)


def _models(backend, seeds, l2s=None, dtype="float64", sizes=(5, 8, 6, 3), act="tanh"):
    l2s = l2s or [0.0] * len(seeds)
    return [accelnn.MLP(list(sizes), act, seed=s, l2=a, dtype=dtype, backend=backend.name)
            for s, a in zip(seeds, l2s)]


def _state(model) -> np.ndarray:
    """Weights and optimizer state arrays of a model, flat."""
    saved = model.state.saved()
    arrays = [*saved.params, *(a for v in saved.opt_arrays.values() for a in v)]
    return np.concatenate([np.ravel(a) for a in arrays])


def _compare(many, single, histories=None, single_histories=None, limit=1e-12) -> float:
    """The largest error of a member against its single fit; asserts everything else equal."""
    worst = 0.0
    for k, (a, b) in enumerate(zip(many, single)):
        worst = max(worst, max_rel_err(_state(a), _state(b)))
        sa, sb = a.state.saved(), b.state.saved()
        assert (sa.epoch, sa.samples_seen, sa.opt_scalars) == (sb.epoch, sb.samples_seen,
                                                                sb.opt_scalars), k
        assert sa.rng_state == sb.rng_state, k
        if histories is not None:
            ha, hb = histories[k], single_histories[k]
            assert list(ha) == list(hb) and ha.epochs == hb.epochs, k
            assert ha.stopped_early == hb.stopped_early, k
            for key in hb:
                assert max_rel_err(np.array(ha[key]), np.array(hb[key])) < limit, (k, key)
    assert worst < limit, worst
    return worst


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_member_equals_its_single_fit(backend, optimizer):
    """Members that differ in seed, lr, L2 and sample weights (none, counts as a bootstrap
    draws them, zeros as a fold leaves them, real numbers), 10 epochs of mini-batches."""
    X, y = _data()
    rng = np.random.default_rng(1)
    weights = [None, rng.multinomial(len(X), np.ones(len(X)) / len(X)).astype(float),
               (np.arange(len(X)) % 5 != 2).astype(float), rng.random(len(X))]
    lr = OPTIMIZERS[optimizer]
    each = [{"lr": lr * (1 + k / 2), "sample_weight": w} for k, w in enumerate(weights)]
    l2s = [0.0, 0.1, 0.0, 0.3]
    many, single = _models(backend, [1, 2, 3, 4], l2s), _models(backend, [1, 2, 3, 4], l2s)
    histories = accelnn.fit_many(many, X, y, epochs=10, batch_size=16, optimizer=optimizer,
                                 each=each)
    alone = [m.fit(X, y, epochs=10, batch_size=16, optimizer=optimizer, **e)
             for m, e in zip(single, each)]
    err = _compare(many, single, histories, alone)
    print(f"{backend.name} {optimizer}: members vs single fits, max rel err {err:.2e}")
    assert all(h.error is None for h in histories)


def test_early_stopping_freezes_a_member_while_the_others_go_on(backend):
    """Each member stops on its own validation loss (its own held-out rows), keeps its best
    weights, and the members stop at different epochs."""
    X, y = _data(m=160)
    stop = accelnn.EarlyStopping("val_loss", patience=3, restore_best_weights=True)
    each = [{"lr": lr} for lr in (0.15, 0.05, 0.02, 0.005)]
    options = dict(epochs=25, batch_size=8, optimizer="momentum", validation_split=0.25,
                   early_stopping=stop, metrics=["accuracy"])
    seeds = [5, 6, 7, 8]
    many, single = _models(backend, seeds), _models(backend, seeds)
    histories = accelnn.fit_many(many, X, y, **options, each=each)
    alone = [m.fit(X, y, **options, **e) for m, e in zip(single, each)]
    err = _compare(many, single, histories, alone)
    print(f"{backend.name} early stopping: epochs {[h.epochs for h in histories]}, "
          f"max rel err {err:.2e}")
    assert len({h.epochs for h in histories}) > 1
    assert any(h.stopped_early for h in histories)


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive", "cosine", "step"])
def test_schedules_run_per_member(backend, schedule):
    """A schedule object shared by several members is a copy for each (its state is one
    model's); one given to a single member is that member's own, as MLP.fit uses it."""
    X, y = _data()
    shared = accelnn.schedules.get_schedule(schedule)
    own = accelnn.schedules.Adaptive(patience=1, tol=0.5)
    each = [{"lr": 0.05}, {"lr": 0.2, "lr_schedule": own}, {"lr": 0.1}]
    each_alone = copy.deepcopy(each)
    many, single = _models(backend, [1, 2, 3]), _models(backend, [1, 2, 3])
    histories = accelnn.fit_many(many, X, y, epochs=8, batch_size=32, optimizer="sgd",
                                 lr_schedule=shared, each=each)
    alone = [m.fit(X, y, epochs=8, batch_size=32, optimizer="sgd",
                   **{"lr_schedule": copy.deepcopy(shared), **e})
             for m, e in zip(single, each_alone)]
    _compare(many, single, histories, alone)
    assert histories[0]["lr"] == alone[0]["lr"]
    assert own.state() != accelnn.schedules.Adaptive().state()  # used, not copied


def test_members_with_data_of_their_own(backend):
    """Cross-validation folds: each member its own rows (different sizes, so different step
    counts and last batches), its own batch size, epochs and shuffling; the folds' arrays are
    moved once however many members share them."""
    X, y = _data(m=150)
    folds = [np.arange(len(X)) % 3 != f for f in range(3)]
    fold_X = [np.ascontiguousarray(X[f][:100 + 7 * i]) for i, f in enumerate(folds)]
    fold_y = [y[f][:100 + 7 * i] for i, f in enumerate(folds)]
    each = [{"X": fold_X[k % 3], "y": fold_y[k % 3], "batch_size": (16, 10, 33)[k % 3],
             "epochs": 4 + k, "shuffle": k != 4, "lr": 0.001 * (k + 1)} for k in range(6)]
    seeds = list(range(10, 16))
    many, single = _models(backend, seeds), _models(backend, seeds)
    histories = accelnn.fit_many(many, optimizer="adam", each=each)
    alone = []
    for m, e in zip(single, each):
        e = dict(e)
        alone.append(m.fit(e.pop("X"), e.pop("y"), optimizer="adam", **e))
    _compare(many, single, histories, alone)
    assert [h.epochs for h in histories] == [4, 5, 6, 7, 8, 9]


def test_a_diverging_member_rolls_back_and_the_others_train_on(backend):
    X, y = _data()
    y = X @ np.arange(1.0, 6.0)
    each = [{"lr": 1e-3}, {"lr": 50.0}, {"lr": 2e-3}]
    sizes = (5, 8, 1)
    many, single = (_models(backend, [1, 2, 3], sizes=sizes, act="relu"),
                    _models(backend, [1, 2, 3], sizes=sizes, act="relu"))
    histories = accelnn.fit_many(many, X, y, epochs=6, batch_size=20, optimizer="sgd",
                                 each=each)
    assert isinstance(histories[1].error, accelnn.DivergenceError)
    with pytest.raises(accelnn.DivergenceError) as raised:
        single[1].fit(X, y, epochs=6, batch_size=20, optimizer="sgd", **each[1])
    assert str(raised.value) == str(histories[1].error)
    for k in (0, 2):
        single[k].fit(X, y, epochs=6, batch_size=20, optimizer="sgd", **each[k])
    _compare(many, single)


def test_metrics_validation_data_class_weight_and_callbacks(backend):
    X, y = _data(classes=2)
    Xv, yv = _data(m=40, classes=2, seed=9)
    seen = {}

    def record(epoch, logs, model):
        seen.setdefault(id(model), []).append((epoch, logs["val_accuracy"]))

    class Stop(accelnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.model.stop_training = True

    options = dict(epochs=6, batch_size=24, optimizer="adam", lr=0.01, metrics=["accuracy"],
                   validation_data=(Xv, yv, np.linspace(0.5, 1.5, 40)), callbacks=[record])
    each = [{"class_weight": "balanced"}, {"class_weight": {0: 2.0}, "callbacks": [Stop()]},
            {}]
    sizes = (5, 7, 1)
    many, single = (_models(backend, [3, 4, 5], sizes=sizes),
                    _models(backend, [3, 4, 5], sizes=sizes))
    histories = accelnn.fit_many(many, X, y, **options, each=[
        {**e, "callbacks": [record, *e.get("callbacks", [])]} for e in each])
    alone = [m.fit(X, y, **{**options, "callbacks": [record, *e.get("callbacks", [])]},
                   **{k: v for k, v in e.items() if k != "callbacks"})
             for m, e in zip(single, each)]
    _compare(many, single, histories, alone)
    assert histories[1].epochs == 3 and histories[0].epochs == 6
    assert [len(seen[id(m)]) for m in many] == [6, 3, 6]


def test_a_fitted_member_is_an_ordinary_model(backend, tmp_path):
    """After fit_many a member predicts, saves, loads and trains on (optimizer=None continues
    its optimizer) exactly as the single fit's model does."""
    X, y = _data()
    many, single = _models(backend, [1, 2]), _models(backend, [1, 2])
    accelnn.fit_many(many, X, y, epochs=3, batch_size=16, optimizer="adam", lr=0.01)
    for m in single:
        m.fit(X, y, epochs=3, batch_size=16, optimizer="adam", lr=0.01)
    for a, b in zip(many, single):
        assert max_rel_err(np.asarray(a.predict_proba(X)), np.asarray(b.predict_proba(X))) \
            < 1e-12
        a.fit(X, y, epochs=5, batch_size=16)
        b.fit(X, y, epochs=5, batch_size=16)
    _compare(many, single)
    many[0].save(tmp_path / "m.npz")
    loaded = accelnn.MLP.load(tmp_path / "m.npz", backend=backend.name)
    assert max_rel_err(_state(loaded), _state(many[0])) == 0.0
    # a second fit_many continues the same way
    accelnn.fit_many(many, X, y, epochs=2, batch_size=16)
    for b in single:
        b.fit(X, y, epochs=2, batch_size=16)
    _compare(many, single)


def test_the_generic_path_equals_the_compiled_epoch(monkeypatch):
    """The numba backend's compiled epoch against the generic batched path on the same
    backend (float64, 1e-12) and in float32 (1e-5 after 4 epochs)."""
    pytest.importorskip("numba")
    backend = accelnn.get_backend("numba")
    X, y = _data()
    w = np.random.default_rng(3).random(len(X))
    for dtype, limit in (("float64", 1e-12), ("float32", 1e-5)):
        fast, generic = (_models(backend, [1, 2], [0.0, 0.2], dtype),
                         _models(backend, [1, 2], [0.0, 0.2], dtype))
        options = dict(epochs=4, batch_size=16, optimizer="adam", lr=0.01,
                       each=[{}, {"sample_weight": w}])
        accelnn.fit_many(fast, X, y, **options)
        with monkeypatch.context() as patch:
            patch.setattr(stacked, "FAST_EPOCHS", {})
            accelnn.fit_many(generic, X, y, **options)
        err = max(max_rel_err(_state(a), _state(b)) for a, b in zip(fast, generic))
        print(f"numba {dtype}: compiled epoch vs generic path, max rel err {err:.2e}")
        assert err < limit


def test_float32_members_match_their_single_fits(backend):
    X, y = _data()
    many, single = (_models(backend, [1, 2], dtype="float32"),
                    _models(backend, [1, 2], dtype="float32"))
    accelnn.fit_many(many, X, y, epochs=10, batch_size=16, optimizer="adam", lr=0.005)
    for m in single:
        m.fit(X, y, epochs=10, batch_size=16, optimizer="adam", lr=0.005)
    err = max(max_rel_err(_state(a), _state(b)) for a, b in zip(many, single))
    print(f"{backend.name} float32: members vs single fits, max rel err {err:.2e}")
    assert err < 1e-3


def test_bad_calls_change_nothing():
    X, y = _data()
    a, b = accelnn.MLP([5, 4, 3], seed=0, backend="numpy"), accelnn.MLP([5, 4, 3], seed=1,
                                                                         backend="numpy")
    before = [_state(a), _state(b)]
    other = accelnn.MLP([5, 6, 3], seed=0, backend="numpy")
    cases = [
        (([a, other], X, y), {}, ValueError, "layer sizes"),
        (([a, b], X, y), {"optimizer": "sgd", "each": [{}, {"optimizer": "adam"}]},
         ValueError, "update rule"),
        (([a, a], X, y), {}, ValueError, "more than once"),
        (([a, b], X, y), {"each": [{}]}, ValueError, "2 models"),
        (([a, b], X, y), {"optimizer": "lbfgs"}, ValueError, "L-BFGS"),
        (([a, b], X, y), {"checkpoint": "x.npz"}, ValueError, "checkpoint"),
        (([a, b], X, y), {"verbose": 1}, ValueError, "verbose"),
        (([a, b], X, y), {"bogus": 1}, TypeError, "bogus"),
        (([a, b], X, y), {"each": [{}, {"lr": -1.0}]}, ValueError, "lr"),
        (([a, b], X, y), {"each": [{}, {"sample_weight": np.zeros(len(X))}]}, ValueError,
         "zero"),
        (([a, b], X[:, :4], y), {}, ValueError, "features"),
        (([a, "model"], X, y), {}, TypeError, "MLP"),
        (([],), {}, ValueError, "at least one"),
    ]
    for args, kwargs, error, words in cases:
        with pytest.raises(error, match=words):
            accelnn.fit_many(*args, **kwargs)
    assert all((x == y_).all() for x, y_ in zip(before, [_state(a), _state(b)]))
    assert a.state.optimizer is None and a.epoch_ == 0


@pytest.mark.parametrize("option", [
    {"shuffle": "no"}, {"epochs": 0}, {"batch_size": 2.5}, {"validation_split": 1.0},
    {"validation_split": 0.2, "validation_data": (np.ones((2, 5)), [0, 1])},
    {"validation_data": (np.ones((2, 5)),)}, {"early_stopping": "yes"},
    {"early_stopping": accelnn.EarlyStopping("val_loss")}, {"metrics": ["bogus"]},
    {"lr_schedule": "bogus"}, {"class_weight": "bogus"}, {"lr": 0.0},
    {"validation_data": (np.ones((2, 4)), [0, 1])}])
def test_options_are_refused_as_fit_refuses_them(option):
    """fit_many checks MLP.fit's options with MLP.fit's own code: the same error and message."""
    X, y = _data()
    with pytest.raises((TypeError, ValueError)) as single:
        accelnn.MLP([5, 4, 3], seed=0, backend="numpy").fit(X, y, **option)
    with pytest.raises(single.type) as many:
        accelnn.fit_many([accelnn.MLP([5, 4, 3], seed=s, backend="numpy") for s in (0, 1)],
                         X, y, **option)
    assert str(many.value) == str(single.value)


def test_numpy_bools_are_taken_as_fit_takes_them():
    X, y = _data()
    models = [accelnn.MLP([5, 4, 3], seed=s, dtype="float64", backend="numpy") for s in (0, 1)]
    accelnn.fit_many(models, X, y, epochs=2, shuffle=np.True_, early_stopping=np.False_)
    single = accelnn.MLP([5, 4, 3], seed=1, dtype="float64", backend="numpy")
    single.fit(X, y, epochs=2, shuffle=np.True_, early_stopping=np.False_)
    np.testing.assert_allclose(_state(models[1]), _state(single), rtol=0, atol=1e-12)


def test_results_do_not_depend_on_numba_threads():
    """The compiled epoch spreads the members over numba's threads; each member's arithmetic
    is the same on any thread, so one thread and two give the same bits."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here")
    backend = accelnn.get_backend("numba")
    X, y = _data()
    runs = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            models = _models(backend, [1, 2, 3], [0.0, 0.1, 0.2])
            accelnn.fit_many(models, X, y, epochs=3, batch_size=16, optimizer="adam", lr=0.01)
            runs.append(np.concatenate([_state(m) for m in models]))
    finally:
        numba.set_num_threads(before)
    assert (runs[0] == runs[1]).all()
