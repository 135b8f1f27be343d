"""ONNX export (accelnn.export): onnxruntime runs the written graph and gives the model's
forward / predict_proba / predict within 1e-5 (float32), for every output head and every
hidden activation; the estimators' graphs give their labels and probabilities."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn
from tests.conftest import max_rel_err

pytest.importorskip("onnx", reason="to_onnx needs the onnx package (pip install 'accelnn[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the oracle is onnxruntime (accelnn[test])")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # ConvergenceWarning is one
ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus"]


def _run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X.astype(np.float32)})))


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("head, n_out", [("sigmoid", 1), ("sigmoid", 3), ("softmax", 4),
                                         ("identity", 2)])
def test_onnx_forward_equals_the_model(tmp_path, head, n_out, act):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)) * 2
    model = accelnn.MLP([5, 7, 6, n_out], act, head, seed=1, dtype="float32",
                        backend="numpy")
    model.set_weights([(W * 1.5, b + rng.normal(size=b.shape) * 0.3)
                       for W, b in model.get_weights()])
    model.to_onnx(tmp_path / "m.onnx")
    got = _run(tmp_path / "m.onnx", X)["output"]
    want = model.forward(X)
    err = max_rel_err(got, want)
    print(f"{head} x{n_out}, {act}: onnxruntime vs forward, max rel err {err:.1e}")
    assert got.shape == want.shape and err < 1e-5
    if head == "softmax":
        np.testing.assert_allclose(got, model.predict_proba(X), atol=1e-5)


def test_unresolved_output_and_missing_package_are_clear(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="not yet resolved"):
        accelnn.MLP([2, 1], backend="numpy").to_onnx(tmp_path / "m.onnx")
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'accelnn\[onnx\]'"):
        accelnn.MLP([2, 1], output="sigmoid", backend="numpy").to_onnx(tmp_path / "m.onnx")


@pytest.mark.parametrize("labels", ["strings", "ints", "binary", "multilabel"])
def test_classifier_onnx_gives_labels_and_probabilities(tmp_path, labels):
    pytest.importorskip("sklearn", reason="the estimators need scikit-learn")
    from accelnn.sklearn import MLPClassifier

    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 4))
    k = X[:, 0] + X[:, 1] > 0
    three = (X[:, 2] > 0).astype(int) + k.astype(int)
    y = {"strings": np.array(["ant", "bee", "cat"])[three],
         "ints": np.array([3, 7, 9])[three],
         "binary": k,
         "multilabel": np.c_[k, X[:, 2] > 0].astype(int)}[labels]
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=50, random_state=0,
                        dtype="float32", backend="numpy").fit(X, y)
    clf.to_onnx(tmp_path / "c.onnx")
    out = _run(tmp_path / "c.onnx", X)
    assert max_rel_err(out["probabilities"], clf.predict_proba(X)) < 1e-5
    np.testing.assert_array_equal(out["label"], clf.predict(X))


@pytest.mark.parametrize("n_targets", [1, 2])
def test_regressor_onnx_gives_predict(tmp_path, n_targets):
    pytest.importorskip("sklearn", reason="the estimators need scikit-learn")
    from accelnn.sklearn import MLPRegressor

    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 3))
    y = X @ rng.normal(size=(3, n_targets))
    reg = MLPRegressor(hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs",
                       max_iter=30, random_state=0, backend="numpy").fit(X, y[:, 0] if
                                                                         n_targets == 1 else y)
    reg.to_onnx(tmp_path / "r.onnx")
    got = _run(tmp_path / "r.onnx", X)["variable"]
    assert got.shape == reg.predict(X).shape and max_rel_err(got, reg.predict(X)) < 1e-5
