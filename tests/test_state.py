"""The training state: snapshot/restore, and a resume that checks the checkpoint (its schedule
state included) before the model takes anything over."""

from __future__ import annotations

import json

import numpy as np
import pytest

import accelnn


def _problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    return X, rng.integers(0, 3, 40)


def _everything(model):
    """All a fit may change: weights, optimizer state arrays and scalars, RNG, counts."""
    s = model.state
    saved = s.saved()
    return (saved.params, saved.opt_arrays, saved.opt_scalars, saved.rng_state,
            type(s.optimizer).__name__, s.epoch, s.samples_seen, model.head, model.classes_)


def _equal(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_snapshot_restore_round_trip(backend):
    X, y = _problem()
    model = accelnn.MLP([3, 6, 3], "tanh", seed=0, dtype="float64", backend=backend)
    model.fit(X, y, epochs=2, batch_size=8, optimizer="adam")
    before = _everything(model)
    snap = model.state.snapshot()
    model.fit(X, y, epochs=3, batch_size=8)
    assert not _equal(_everything(model), before)
    model.state.restore(snap)
    assert _equal(_everything(model), before)
    model.fit(X, y, epochs=1, batch_size=8)
    model.state.snapshot(into=snap)  # buffers reused
    again = _everything(model)
    model.fit(X, y, epochs=1, batch_size=8)
    model.state.restore(snap)
    assert _equal(_everything(model), again)


def test_samples_seen_counts_rows_trained_on():
    X, y = _problem()
    model = accelnn.MLP([3, 6, 3], seed=0, backend="numpy")
    model.fit(X, y, epochs=2, batch_size=8, optimizer="sgd")
    assert model.state.samples_seen == 80
    model.fit(X[:10], y[:10], epochs=1)  # the same optimizer continues
    assert model.state.samples_seen == 90


def _rewrite_run(src, dst, run):
    with np.load(src, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    header["run"] = run
    arrays["header"] = np.array(json.dumps(header))
    np.savez(dst, **arrays)
    return dst


@pytest.mark.parametrize("schedule, state", [
    ("cosine", {}),
    ("cosine", {"t_max": 0}),
    ("cosine", {"t_max": "9"}),
    ("adaptive", {"scale": -1.0, "best": 1.0, "bad": 0}),
    ("adaptive", {"scale": 1.0, "best": "low", "bad": 0}),
    ("adaptive", {"scale": 1.0, "best": 1.0, "bad": -2}),
    ("adaptive", [1, 2]),
])
def test_resume_from_a_tampered_schedule_state_changes_nothing(tmp_path, schedule, state):
    """rel-08: the schedule state was checked only after the model had taken over the
    checkpoint's weights, optimizer, epoch and RNG."""
    X, y = _problem()
    src = tmp_path / "ck.npz"
    accelnn.MLP([3, 4, 3], "tanh", seed=0, dtype="float64", backend="numpy").fit(
        X, y, epochs=2, batch_size=8, optimizer="adam", lr_schedule=schedule, checkpoint=src)
    bad = _rewrite_run(src, tmp_path / "bad.npz",
                       {"schedule": schedule, "schedule_state": state, "lr": 0.001})
    model = accelnn.MLP([3, 4, 3], "tanh", seed=0, dtype="float64", backend="numpy")
    model.fit(X, y, epochs=1)
    before = _everything(model)
    with pytest.raises(ValueError, match=r"bad\.npz: bad model file: ValueError: "):
        model.fit(X, y, epochs=6, batch_size=8, lr_schedule=schedule, resume_from=bad)
    assert _equal(_everything(model), before)
