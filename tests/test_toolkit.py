"""Training toolkit: optimizers against their formulas, schedules, validation, metrics,
early stopping, callbacks, progress, checkpoints and exact resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import accelnn
from accelnn import schedules
from tests.conftest import max_rel_err


def _problem(m=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 3))
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def _hand_update(name, p, g, s, lr, t):
    """One step of each optimizer's published formula, in plain NumPy (float64)."""
    if name == "sgd":
        return p - lr * g
    if name in ("momentum", "nesterov"):
        s["v"] = 0.9 * s.get("v", 0.0) - lr * g
        return p + (0.9 * s["v"] - lr * g if name == "nesterov" else s["v"])
    if name == "rmsprop":
        s["sq"] = 0.9 * s.get("sq", 0.0) + 0.1 * g * g
        return p - lr * g / (np.sqrt(s["sq"]) + 1e-8)
    if name == "adamw":
        p = p * (1 - lr * 0.01)
    s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
    s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
    lr_t = lr * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    return p - lr_t * s["m"] / (np.sqrt(s["v"]) + 1e-8)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_first_three_updates_equal_the_formula(backend, name):
    X, y = _problem()
    model = accelnn.MLP([3, 5, 3], "tanh", seed=1, dtype="float64", backend=backend)
    ref = accelnn.MLP([3, 5, 3], "tanh", seed=1, dtype="float64", backend="numpy")
    lr = 0.05
    flat = [w for pair in ref.get_weights() for w in pair]
    states = [{} for _ in flat]
    opt = accelnn.optimizers.get_optimizer(name, lr)
    worst = 0.0
    for t in range(1, 4):
        _, grads = ref.loss_and_grads(X, y)
        flat = [_hand_update(name, p, g, s, lr, t)
                for p, g, s in zip(flat, [g for pair in grads for g in pair], states)]
        ref.set_weights(list(zip(flat[0::2], flat[1::2])))
        model.fit(X, y, optimizer=opt)
        got = [w for pair in model.get_weights() for w in pair]
        worst = max(worst, max(max_rel_err(a, b) for a, b in zip(got, flat)))
    print(f"{backend.name} {name}: max relative error over three updates {worst:.1e}")
    assert worst < 1e-12


def test_optimizer_hyper_parameters_are_checked():
    with pytest.raises(ValueError, match="momentum must be a number in"):
        accelnn.SGD(momentum=1.0)
    with pytest.raises(ValueError, match="beta2 must be a number in"):
        accelnn.Adam(beta2=-0.1)
    with pytest.raises(ValueError, match="rho must be a number in"):
        accelnn.RMSprop(rho=2)
    with pytest.raises(ValueError, match="eps must be a number in"):
        accelnn.Adam(eps=0)
    with pytest.raises(ValueError, match="lr must be a number in"):
        accelnn.AdamW(lr=-1)


def test_schedule_values():
    assert schedules.StepDecay(2, 0.5).lr(1.0, 5, 0) == 0.25
    assert schedules.Exponential(0.9).lr(2.0, 2, 0) == pytest.approx(1.62)
    cos = schedules.Cosine(t_max=4, lr_min=0.1)
    assert [round(cos.lr(1.0, e, 0), 12) for e in (0, 2, 4, 9)] == [1.0, 0.55, 0.1, 0.1]
    assert schedules.InvScaling(0.5).lr(1.0, 3, 99) == pytest.approx(0.1)
    ada = schedules.Adaptive(patience=1, tol=0.0)
    lrs = []
    for loss in (1.0, 0.5, 0.6, 0.7, 0.8, 0.4):
        lrs.append(ada.lr(1.0, 0, 0))
        ada.end_epoch(loss)
    # two epochs in a row without improvement (more than patience=1) divide lr by 5
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.2, 0.2]
    for bad, msg in ((lambda: schedules.StepDecay(0), "step_size must be an integer > 0"),
                     (lambda: schedules.Exponential(-1), "gamma must be a number > 0"),
                     (lambda: accelnn.schedules.get_schedule("warmup"), "unknown lr_schedule")):
        with pytest.raises(ValueError, match=msg):
            bad()


def test_schedules_count_the_run_not_the_current_call():
    """hunt-02: a run continued on data of another size keeps t = the samples seen (not epoch
    x the rows of this call), and a Cosine without t_max keeps the length of the fit that
    started it; a fresh optimizer starts both over."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 4)), (rng.normal(size=100) > 0).astype(int)
    model = accelnn.MLP([4, 6, 1], "tanh", seed=0, backend="numpy", dtype="float64")
    inv = schedules.InvScaling(0.5)
    h1 = model.fit(X, y, epochs=2, batch_size=10, optimizer="sgd", lr=0.5, lr_schedule=inv)
    h2 = model.fit(X[:10], y[:10], epochs=2, batch_size=10, lr_schedule=inv)
    assert h1["lr"] + h2["lr"] == [0.5 / math.sqrt(t + 1) for t in (0, 100, 200, 210)]
    assert schedules.InvScaling(0.5, t0=90).lr(1.0, 0, 9) == pytest.approx(0.1)
    cos = schedules.Cosine()
    h3 = model.fit(X, y, epochs=4, optimizer="sgd", lr=1.0, lr_schedule=cos)
    h4 = model.fit(X, y, epochs=4, lr=1.0, lr_schedule=cos)  # continues: t_max stays 4
    assert [round(v, 12) for v in h3["lr"] + h4["lr"]] == [1.0, 0.853553390593, 0.5,
                                                             0.146446609407, 0, 0, 0, 0]
    h5 = model.fit(X, y, epochs=2, optimizer="sgd", lr=1.0, lr_schedule=cos)  # starts over
    assert h5["lr"] == [1.0, 0.5]


def test_history_records_lr_per_epoch():
    X, y = _problem()
    hist = accelnn.MLP([3, 4, 3], seed=0, backend="numpy").fit(
        X, y, epochs=4, lr=0.8, lr_schedule=schedules.StepDecay(2, 0.5))
    assert hist["lr"] == [0.8, 0.8, 0.4, 0.4]


def test_validation_split_is_seeded_and_metrics_are_right():
    X, y = _problem(m=40)
    a = accelnn.MLP([3, 6, 3], seed=2, dtype="float64", backend="numpy")
    b = accelnn.MLP([3, 6, 3], seed=2, dtype="float64", backend="numpy")
    ha = a.fit(X, y, epochs=3, validation_split=0.25, metrics=["accuracy"])
    hb = b.fit(X, y, epochs=3, validation_split=0.25, metrics=["accuracy"])
    assert ha.history == hb.history
    assert set(ha.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    # Accuracy over all 40 rows by hand, at the final weights, is a mix of the two parts.
    hand = float(np.mean(a.predict(X) == y))
    assert min(ha["accuracy"][-1], ha["val_accuracy"][-1]) <= hand + 1e-12
    assert hand <= max(ha["accuracy"][-1], ha["val_accuracy"][-1]) + 1e-12
    # val_loss equals the loss of the model on the held-out rows.
    perm = np.random.default_rng(a.state.split_seed).permutation(40)
    hold = np.sort(perm[:10])
    assert ha["val_loss"][-1] == pytest.approx(a.loss(X[hold], y[hold]), rel=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"validation_split": 1.0}, "validation_split must be a number in"),
    ({"validation_split": 0.2, "validation_data": (np.zeros((2, 3)), [0, 1])},
     "not both"),
    ({"early_stopping": True}, "needs validation_data or validation_split"),
    ({"metrics": ["f1"]}, "unknown metrics"),
    ({"lr_schedule": "warmup"}, "unknown lr_schedule"),
    ({"verbose": 3}, "verbose must be 0, 1 or 2"),
    ({"early_stopping": "yes"}, "early_stopping must be True, False or an EarlyStopping"),
    ({"callbacks": [3]}, "a callback must be callable"),
])
def test_fit_rejects_bad_toolkit_arguments(kwargs, message):
    X, y = _problem()
    model = accelnn.MLP([3, 4, 3], seed=0, backend="numpy")
    before = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(X, y, **kwargs)
    assert all(np.array_equal(a, b) for pa, pb in zip(before, model.get_weights())
               for a, b in zip(pa, pb))


def test_accuracy_needs_a_classifier():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="accuracy needs a classifier"):
        accelnn.MLP([2, 1], output="identity", backend="numpy").fit(
            rng.normal(size=(5, 2)), rng.normal(size=5), metrics=["accuracy"])


def test_early_stopping_stops_and_restores_the_best_weights():
    X, y = _problem()
    stop = accelnn.EarlyStopping(monitor="loss", patience=3, min_delta=1e9)
    model = accelnn.MLP([3, 4, 3], seed=0, dtype="float64", backend="numpy")
    hist = model.fit(X, y, epochs=50, lr=0.3, early_stopping=stop)
    assert hist.epochs == 4 and hist.stopped_early  # the best epoch, then 3 without progress
    once = accelnn.MLP([3, 4, 3], seed=0, dtype="float64", backend="numpy")
    once.fit(X, y, epochs=1, lr=0.3)
    assert all(np.array_equal(a, b) for pa, pb in zip(model.get_weights(), once.get_weights())
               for a, b in zip(pa, pb))
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        accelnn.EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="unknown monitor"):
        accelnn.EarlyStopping(monitor="f1")


def test_early_stopping_on_validation_accuracy_with_real_overfitting():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 2, 60)  # pure noise: validation accuracy cannot keep improving
    model = accelnn.MLP([3, 64, 1], "relu", seed=0, backend="numpy")
    hist = model.fit(X, y, epochs=500, optimizer="adam", lr=0.01, validation_split=0.3,
                     early_stopping=accelnn.EarlyStopping("val_accuracy", patience=20))
    assert hist.stopped_early and hist.epochs < 500


def test_callbacks_see_logs_and_can_stop_training():
    X, y = _problem()
    seen = []

    class Stopper:
        def on_epoch_end(self, epoch, logs, model):
            seen.append((epoch, logs["loss"]))
            if epoch == 3:
                model.stop_training = True

    hist = accelnn.MLP([3, 4, 3], seed=0, backend="numpy").fit(
        X, y, epochs=10, callbacks=[Stopper(), lambda e, logs, m: None])
    assert [e for e, _ in seen] == [1, 2, 3] and hist.epochs == 3
    assert [loss for _, loss in seen] == hist["loss"]


def test_verbose_two_prints_a_line_per_epoch_and_zero_is_silent(capsys):
    X, y = _problem()
    accelnn.MLP([3, 4, 3], seed=0, backend="numpy").fit(X, y, epochs=3, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3 loss ")
    accelnn.MLP([3, 4, 3], seed=0, backend="numpy").fit(X, y, epochs=3)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("tqdm", [True, False])
def test_verbose_one_shows_a_progress_bar_on_a_terminal(monkeypatch, tqdm):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    if tqdm:
        pytest.importorskip("tqdm", reason="the bar uses tqdm when it is installed")
    else:  # without tqdm: a plain text line rewritten in place
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    X, y = _problem()
    accelnn.MLP([3, 4, 3], seed=0, backend="numpy").fit(X, y, epochs=3, verbose=1)
    shown = screen.getvalue()
    assert "3/3" in shown and "loss" in shown
    assert ("epoch 3/3 loss" in shown) != tqdm


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="History.plot needs matplotlib")
    X, y = _problem()
    hist = accelnn.MLP([3, 4, 3], seed=0, backend="numpy").fit(
        X, y, epochs=5, validation_split=0.2, metrics=["accuracy"])
    hist.plot(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(backend, epochs, **kwargs):
    X, y = _problem(m=30)
    model = accelnn.MLP([3, 6, 3], "relu", seed=3, dtype="float64", backend=backend)
    model.fit(X, y, epochs=epochs, batch_size=7, validation_split=0.2,
              lr_schedule=schedules.Adaptive(patience=0, tol=1.0), **kwargs)
    return model


@pytest.mark.parametrize("optimizer", ["adam", "nesterov", "rmsprop"])
def test_resume_equals_an_uninterrupted_run(backend, tmp_path, optimizer):
    whole = _run(backend, 10, optimizer=optimizer)
    _run(backend, 5, optimizer=optimizer, checkpoint=tmp_path / "ck.npz")
    X, y = _problem(m=30)
    resumed = accelnn.MLP([3, 6, 3], "relu", seed=99, dtype="float64", backend=backend)
    hist = resumed.fit(X, y, epochs=10, batch_size=7, validation_split=0.2,
                       lr_schedule=schedules.Adaptive(patience=0, tol=1.0),
                       resume_from=tmp_path / "ck.npz")
    assert hist.epochs == 5 and resumed.epoch_ == 10
    pairs = [(a, b) for pa, pb in zip(whole.get_weights(), resumed.get_weights())
             for a, b in zip(pa, pb)]
    if backend.device == "cpu":
        assert all(np.array_equal(a, b) for a, b in pairs)  # bit for bit
    else:
        assert max(max_rel_err(b, a) for a, b in pairs) < 1e-12
    assert whole.state.rng.bit_generator.state == resumed.state.rng.bit_generator.state


def test_load_then_fit_continues_the_optimizer(tmp_path):
    X, y = _problem()
    a = accelnn.MLP([3, 4, 3], seed=0, dtype="float64", backend="numpy")
    a.fit(X, y, epochs=2, optimizer="adam", batch_size=5)
    a.save(tmp_path / "m.npz")
    b = accelnn.MLP.load(tmp_path / "m.npz", backend="numpy")
    assert b.state.optimizer.config() == a.state.optimizer.config()
    assert b.state.opt_state["t"] == 10
    for key in ("m", "v"):
        assert all(np.array_equal(p, q)
                   for p, q in zip(a.state.opt_state[key], b.state.opt_state[key]))
    a.fit(X, y, epochs=1, batch_size=5)
    b.fit(X, y, epochs=1, batch_size=5)
    assert all(np.array_equal(p, q) for pa, pb in zip(a.get_weights(), b.get_weights())
               for p, q in zip(pa, pb))


def test_resume_rejects_mismatched_or_finished_checkpoints(tmp_path):
    X, y = _problem()
    a = accelnn.MLP([3, 4, 3], seed=0, backend="numpy")
    a.fit(X, y, epochs=2, optimizer="adam", checkpoint=tmp_path / "ck.npz")
    other = accelnn.MLP([3, 5, 3], seed=0, backend="numpy")
    with pytest.raises(ValueError, match="the checkpoint is of another network"):
        other.fit(X, y, epochs=4, resume_from=tmp_path / "ck.npz")
    with pytest.raises(ValueError, match="nothing is left to run for epochs=2"):
        accelnn.MLP([3, 4, 3], backend="numpy").fit(X, y, epochs=2,
                                                    resume_from=tmp_path / "ck.npz")
    with pytest.raises(ValueError, match="leave optimizer unset"):
        accelnn.MLP([3, 4, 3], backend="numpy").fit(X, y, epochs=4, optimizer="sgd",
                                                    resume_from=tmp_path / "ck.npz")
    accelnn.MLP([3, 4, 3], backend="numpy").save(tmp_path / "fresh.npz")
    with pytest.raises(ValueError, match="holds no optimizer state"):
        accelnn.MLP([3, 4, 3], backend="numpy").fit(X, y, epochs=4,
                                                    resume_from=tmp_path / "fresh.npz")


def test_tampered_optimizer_state_is_rejected(tmp_path):
    X, y = _problem()
    a = accelnn.MLP([3, 4, 3], seed=0, backend="numpy")
    a.fit(X, y, epochs=1, optimizer="adam")
    a.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["opt.m.2"] = np.zeros((2, 2))
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ValueError, match=r"optimizer state opt.m.2: expected shape \(4, 3\)"):
        accelnn.MLP.load(tmp_path / "m.npz")
    a.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    header["optimizer_scalars"]["t"] = "3"
    arrays["header"] = np.array(json.dumps(header))
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ValueError, match="optimizer state t must be an integer >= 0"):
        accelnn.MLP.load(tmp_path / "m.npz")


@pytest.mark.parametrize("name", ["sgd", "nesterov", "adamw", "rmsprop"])
def test_numpy_block_wise_updates_equal_whole_array_updates(name):
    """The NumPy backend cuts large parameters into cache-sized blocks for its updates; every
    element must come out exactly as from the whole-array update of the base class."""
    from accelnn.backends import numpy_backend
    from accelnn.backends.base import Backend

    rng = np.random.default_rng(0)
    shapes = [(numpy_backend.BLOCK + 1000, 3), (7,)]  # one parameter spans several blocks
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(3)]
    runs = []
    for be in (numpy_backend.NumpyBackend(), Backend()):
        params = [p.copy() for p in start]
        opt = accelnn.optimizers.get_optimizer(name, 0.01)
        state = opt.init_state(be, params)
        for g in grads:
            opt.update(be, params, [x.copy() for x in g], state, 0.01)
        runs.append(params)
    assert not np.array_equal(runs[0][0], start[0])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def test_resume_keeps_the_checkpoint_classes(tmp_path):
    """A resumed fit encodes labels with the checkpoint's classes, even when the new data
    misses some of them."""
    X, y = _problem(m=30)
    names = np.array(["a", "b", "c"])[y]
    first = accelnn.MLP([3, 4, 3], "tanh", seed=0, dtype="float64", backend="numpy")
    first.fit(X, names, epochs=2, optimizer="adam", checkpoint=tmp_path / "ck.npz")
    keep = names != "a"
    resumed = accelnn.MLP([3, 4, 3], "tanh", dtype="float64", backend="numpy")
    resumed.fit(X[keep], names[keep], epochs=4, resume_from=tmp_path / "ck.npz")
    assert resumed.classes_.tolist() == ["a", "b", "c"]
    first.fit(X[keep], names[keep], epochs=2)  # the same two epochs, uninterrupted
    assert all(np.array_equal(a, b) for pa, pb in zip(first.get_weights(),
                                                       resumed.get_weights())
               for a, b in zip(pa, pb))


@pytest.mark.parametrize("schedule", [lambda: schedules.Cosine(t_max=10),
                                      lambda: schedules.StepDecay(3, 0.5),
                                      lambda: schedules.InvScaling(0.3)])
def test_resume_is_exact_for_every_schedule(tmp_path, schedule):
    X, y = _problem(m=30)

    def fresh():
        return accelnn.MLP([3, 5, 3], "relu", seed=1, dtype="float64", backend="numpy")

    whole = fresh()
    whole.fit(X, y, epochs=10, batch_size=8, optimizer="adam", lr_schedule=schedule())
    part = fresh()
    part.fit(X, y, epochs=4, batch_size=8, optimizer="adam", lr_schedule=schedule(),
             checkpoint=tmp_path / "ck.npz")
    rest = fresh()
    hist = rest.fit(X, y, epochs=10, batch_size=8, lr_schedule=schedule(),
                    resume_from=tmp_path / "ck.npz")
    assert hist.epochs == 6
    assert all(np.array_equal(a, b) for pa, pb in zip(whole.get_weights(), rest.get_weights())
               for a, b in zip(pa, pb))


def test_cosine_without_t_max_anneals_over_the_first_run_and_keeps_it(tmp_path):
    X, y = _problem()
    model = accelnn.MLP([3, 4, 3], seed=0, backend="numpy")
    cosine = schedules.Cosine()
    hist = model.fit(X, y, epochs=4, lr=1.0, lr_schedule=cosine, checkpoint=tmp_path / "c")
    assert hist["lr"][0] == 1.0 and cosine.t_max is None  # the user's object keeps None
    resumed = accelnn.MLP([3, 4, 3], backend="numpy")
    later = resumed.fit(X, y, epochs=6, lr=1.0, lr_schedule=schedules.Cosine(),
                        resume_from=tmp_path / "c")
    assert later["lr"] == [0.0, 0.0]  # t_max stayed 4, the first run's


def test_early_stopping_checkpoint_holds_the_restored_weights(tmp_path):
    X, y = _problem()
    model = accelnn.MLP([3, 4, 3], seed=0, dtype="float64", backend="numpy")
    model.fit(X, y, epochs=30, lr=0.3, checkpoint=tmp_path / "ck.npz",
              early_stopping=accelnn.EarlyStopping("loss", patience=2, min_delta=1e9))
    saved = accelnn.MLP.load(tmp_path / "ck.npz")
    assert all(np.array_equal(a, b) for pa, pb in zip(model.get_weights(), saved.get_weights())
               for a, b in zip(pa, pb))


def test_resume_checks_the_schedule_and_keeps_the_lr(tmp_path):
    X, y = _problem()

    def fresh():
        return accelnn.MLP([3, 4, 3], seed=0, dtype="float64", backend="numpy")

    fresh().fit(X, y, epochs=2, optimizer=accelnn.SGD(0.01), lr=0.5, batch_size=6,
                checkpoint=tmp_path / "ck.npz")
    other = fresh()
    snapshot = other.get_weights()
    with pytest.raises(ValueError, match="ran lr_schedule 'constant'; resume it with the same"):
        other.fit(X, y, epochs=4, lr_schedule="adaptive", resume_from=tmp_path / "ck.npz")
    assert other.epoch_ == 0 and all(
        np.array_equal(a, b) for pa, pb in zip(snapshot, other.get_weights())
        for a, b in zip(pa, pb))
    whole = fresh()
    whole.fit(X, y, epochs=4, optimizer=accelnn.SGD(0.01), lr=0.5, batch_size=6)
    other.fit(X, y, epochs=4, batch_size=6, resume_from=tmp_path / "ck.npz")  # lr 0.5 again
    assert all(np.array_equal(a, b) for pa, pb in zip(whole.get_weights(), other.get_weights())
               for a, b in zip(pa, pb))


def test_numpy_updates_of_non_contiguous_arrays_stay_in_place():
    from accelnn.backends.numpy_backend import BLOCK, NumpyBackend

    p = np.ones((3, BLOCK), order="F")
    g = np.ones((3, BLOCK), order="F")
    accelnn.SGD(0.5).update(NumpyBackend(), [p], [g], {}, 0.5)
    assert (p == 0.5).all()
