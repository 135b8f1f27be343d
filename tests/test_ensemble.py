"""Ensemble: every member equals MLP.fit with its seed and its bootstrap counts as sample
weights (float64, 1e-12), predictions are the members' means, and files round-trip without
pickle (and refuse what is not an ensemble)."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn
from tests.conftest import max_rel_err


def _data(m=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 4))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)


def _weights(model) -> np.ndarray:
    return np.concatenate([np.ravel(a) for pair in model.get_weights() for a in pair])


def test_members_equal_single_fits_on_their_bootstrap_samples(backend):
    X, y = _data()
    options = dict(epochs=6, batch_size=16, optimizer="adam", lr=0.01)
    ens = accelnn.Ensemble([4, 8, 3], "tanh", n_models=4, seed=3, bootstrap=True,
                           l2=0.01, dtype="float64", backend=backend.name)
    ens.fit(X, y, **options)
    ens.fit(X, y, **options)  # a second fit draws new samples and continues the members
    rng = np.random.default_rng(3)  # the oracle: the ensemble's rule, written out
    seeds = rng.integers(2**63, size=4).tolist()
    singles = [accelnn.MLP([4, 8, 3], "tanh", l2=0.01, seed=s, dtype="float64",
                           backend=backend.name) for s in seeds]
    for _ in range(2):
        counts = [np.bincount(rng.integers(0, len(X), len(X)), minlength=len(X))
                  for _ in singles]
        for model, c in zip(singles, counts):
            model.fit(X, y, sample_weight=c.astype(float), **options)
    err = max(max_rel_err(_weights(a), _weights(b)) for a, b in zip(ens.members, singles))
    print(f"{backend.name}: bootstrap members vs single fits, max rel err {err:.2e}")
    assert err < 1e-12


def test_predictions_are_the_members_means():
    X, y = _data()
    labels = np.array(["cat", "dog", "eel"])[y]
    ens = accelnn.Ensemble([4, 6, 3], n_models=3, seed=1, dtype="float64", backend="numpy")
    ens.fit(X, labels, epochs=5, batch_size=20, optimizer="adam", lr=0.02)
    P = np.mean([m.predict_proba(X) for m in ens.members], axis=0)
    assert max_rel_err(ens.predict_proba(X), P) < 1e-15
    assert (ens.predict(X) == np.array(["cat", "dog", "eel"])[P.argmax(axis=1)]).all()
    assert list(ens.classes_) == ["cat", "dog", "eel"]
    binary = accelnn.Ensemble([4, 5, 1], n_models=2, seed=2, dtype="float64", backend="numpy")
    binary.fit(X, (y > 0).astype(int), epochs=3, batch_size=20)
    p1 = np.mean([m.forward(X)[:, 0] for m in binary.members], axis=0)
    assert (binary.predict(X) == (p1 > 0.5)).all()
    reg = accelnn.Ensemble([4, 5, 1], output="identity", n_models=2, seed=2, dtype="float64",
                           backend="numpy")
    reg.fit(X, X[:, 0], epochs=3, batch_size=20)
    assert reg.predict(X).shape == (len(X),)
    assert max_rel_err(reg.predict(X), np.mean([m.predict(X) for m in reg.members],
                                               axis=0)) < 1e-15


def test_an_ensemble_beats_its_average_member_on_held_out_rows():
    X, y = _data(m=600)
    Xt, yt = _data(m=400, seed=5)
    ens = accelnn.Ensemble([4, 16, 3], n_models=6, seed=0, bootstrap=True, dtype="float64",
                           backend="numpy")
    ens.fit(X, y, epochs=15, batch_size=16, optimizer="adam", lr=0.01)
    members = [np.mean(m.predict(Xt) == yt) for m in ens.members]
    assert np.mean(ens.predict(Xt) == yt) >= np.mean(members)


def test_save_and_load_round_trip(tmp_path):
    X, y = _data()
    ens = accelnn.Ensemble([4, 6, 3], n_models=3, seed=4, bootstrap=True, dtype="float64",
                           backend="numpy")
    ens.fit(X, y, epochs=2, batch_size=16, optimizer="adam")
    path = tmp_path / "ens.npz"
    ens.save(path)
    back = accelnn.Ensemble.load(path, backend="numpy")
    assert back.n_models == 3 and back.bootstrap
    assert (back.predict_proba(X) == ens.predict_proba(X)).all()
    for model in (ens, back):  # the loaded one goes on exactly as the original
        model.fit(X, y, epochs=2, batch_size=16)
    assert all((_weights(a) == _weights(b)).all() for a, b in zip(ens.members, back.members))
    assert "3 x MLP" in repr(back)


def test_load_refuses_what_is_not_an_ensemble(tmp_path):
    X, y = _data()
    ens = accelnn.Ensemble([4, 6, 3], n_models=2, seed=4, dtype="float64", backend="numpy")
    ens.fit(X, y, epochs=1)
    good = tmp_path / "ens.npz"
    ens.save(good)
    model_file = tmp_path / "mlp.npz"
    ens.members[0].save(model_file)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with np.load(good) as data:
        arrays = {k: data[k] for k in data.files}
    bad_member = dict(arrays, member1=arrays["member1"][:200])
    np.savez(tmp_path / "truncated_member.npz", **bad_member)
    missing = {k: v for k, v in arrays.items() if k != "member1"}
    np.savez(tmp_path / "missing.npz", **missing)
    other = accelnn.MLP([4, 7, 3], seed=0, dtype="float64", backend="numpy")
    from accelnn.sklearn_support import model_bytes
    mixed = dict(arrays, member1=np.frombuffer(model_bytes(other), np.uint8))
    np.savez(tmp_path / "mixed.npz", **mixed)
    cases = {"junk.npz": "not a readable", "mlp.npz": "not an accelnn ensemble",
             "truncated_member.npz": "member1", "missing.npz": "n_models",
             "mixed.npz": "different architectures"}
    for name, words in cases.items():
        with pytest.raises(ValueError, match=words):
            accelnn.Ensemble.load(tmp_path / name)


def test_bad_arguments():
    for kwargs, words in (({"n_models": 0}, "n_models"), ({"seeds": [1, 1]}, "distinct"),
                          ({"seeds": [1.5]}, "distinct")):
        with pytest.raises(ValueError, match=words):
            accelnn.Ensemble([4, 3], **kwargs)
    ens = accelnn.Ensemble([4, 3], n_models=2, backend="numpy")
    with pytest.raises(ValueError, match="each has 1"):
        ens.fit(*_data(), each=[{}])
