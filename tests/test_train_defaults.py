"""What `accelnn train` decides for the user, through accelnn.cli.main: the task (a stated
rule, printed with its reason, --task to override), standardized features folded into the
saved model (--no-standardize to turn off), and an existing --output refused without
--force. With scikit-learn: diabetes regresses, raw wine and breast cancer train as well as
standardized copies, and a semicolon CSV with decimal commas trains."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

import accelnn
from accelnn.cli import main
from accelnn.scaling import Standardizer
from accelnn.train_cli import choose_task

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="the data sets are scikit-learn's")
needs_pandas = pytest.mark.skipif(importlib.util.find_spec("pandas") is None,
                                  reason="the CSV files are written with pandas")
QUIET = ["--quiet", "--backend", "numpy"]


@pytest.mark.parametrize("y, task, why", [
    (np.array(["a", "b", "a"]), "classify", "the targets are text labels"),
    (np.arange(100) % 3, "classify", "3 distinct whole numbers in 100 rows"),
    (np.arange(1000) % 40, "classify", "40 distinct whole numbers in 1000 rows"),  # <= 5%
    (np.arange(100) % 25, "regress", "25 distinct whole numbers in 100 rows: more than 20"),
    (np.arange(10) + 0.5, "regress", "the targets have fractions"),
    (np.zeros((10, 2)), "regress", "2 target columns"),
    (np.array([1.0, 2.0, 1.0]), "classify", "2 distinct whole numbers"),
])
def test_the_task_rule(y, task, why):
    chosen, reason = choose_task(y, "auto")
    assert chosen == task and reason.startswith(why), reason
    assert choose_task(y.reshape(len(y), -1)[:, 0], "classify") == ("classify",
                                                                    "as --task says")


def _csv(path, X, y, names=None, sep=",", decimal="."):
    names = names or [f"x{j}" for j in range(X.shape[1])] + ["target"]
    rows = [sep.join(names)] + [sep.join([repr(float(v)).replace(".", decimal) for v in row]
                                         + [str(t)]) for row, t in zip(X, y)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _score(capsys, pattern: str) -> float:
    captured = capsys.readouterr()
    match = re.search(pattern, captured.err + captured.out)
    assert match, captured
    return float(match.group(1))


@needs_sklearn
def test_diabetes_integer_targets_are_a_regression(tmp_path, capsys):
    """442 rows of whole-number targets with 214 values used to train a "187-class"
    classifier (0.9% test accuracy)."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True, scaled=False)
    Xtr, Xte, ytr, yte = train_test_split(X, y.astype(int), test_size=0.25, random_state=0)
    train, test = _csv(tmp_path / "tr.csv", Xtr, ytr), _csv(tmp_path / "te.csv", Xte, yte)
    assert main(["train", train, "--layers", "8", "--epochs", "100", "--validation-split",
                 "0", "--output", str(tmp_path / "m.npz"), *QUIET]) == 0
    out = capsys.readouterr().out
    assert ("task: regress: 187 distinct whole numbers in 331 rows: more than 20 and more "
            "than 5% of the rows are values (--task classify") in out
    assert re.search(r"^train: loss [\d.]+, R² 0\.\d+, mean absolute error", out, re.M)
    assert main(["predict", str(tmp_path / "m.npz"), test, "--target", "target",
                 "--output", str(tmp_path / "p.csv")]) == 0
    r2 = _score(capsys, r"R² (-?[\d.]+), mean absolute error [\d.]+, mean squared error "
                        r"[\d.]+ on 111 samples")
    print(f"diabetes: held-out R² {r2}")
    assert r2 > 0.25  # a linear fit reaches 0.36 on this split
    assert main(["train", train, "--task", "classify", "--epochs", "1", "--output",
                 str(tmp_path / "c.npz"), *QUIET]) == 0
    assert "task: classify: as --task says" in capsys.readouterr().out


@needs_sklearn
@pytest.mark.parametrize("name", ["wine", "breast_cancer"])
def test_raw_features_train_as_well_as_standardized_ones(tmp_path, capsys, name):
    """Raw wine reached 84% where standardized wine reached 100%: the features are now
    standardized by default. Held-out accuracy of `accelnn predict` on a test CSV, for the
    raw CSV, a standardized copy, and the raw CSV with --no-standardize (the old way)."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    files = {"raw": (Xtr, Xte, []), "standardized": ((Xtr - mu) / sd, (Xte - mu) / sd,
                                                     ["--no-standardize"]),
             "raw, --no-standardize": (Xtr, Xte, ["--no-standardize"])}
    accuracy = {}
    for kind, (a, b, options) in files.items():
        train = _csv(tmp_path / "train.csv", a, ytr)
        test = _csv(tmp_path / "test.csv", b, yte)
        assert main(["train", train, "--validation-split", "0", "--output",
                     str(tmp_path / "m.npz"), "--force", *options, *QUIET]) == 0
        assert main(["predict", str(tmp_path / "m.npz"), test, "--target", "target",
                     "--output", str(tmp_path / "p.csv")]) == 0
        accuracy[kind] = _score(capsys, r"accuracy ([\d.]+)% on")
    print(f"{name}: held-out accuracy {accuracy}")
    assert abs(accuracy["raw"] - accuracy["standardized"]) <= 2.0
    assert accuracy["raw"] >= 93


@needs_sklearn
def test_a_semicolon_csv_with_decimal_commas_trains(tmp_path, capsys):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    path = _csv(tmp_path / "wine.csv", X, y, sep=";", decimal=",")
    assert main(["train", path, "--output", str(tmp_path / "m.npz"), *QUIET]) == 0
    out = capsys.readouterr().out
    assert "delimiter ';' (detected); decimal comma (detected); header on line 1" in out
    assert "178 samples, 13 features, classify, 3 classes" in out
    assert _metric(out, "validation") >= 90


def _metric(out: str, label: str) -> float:
    return float(re.search(rf"^{label}: .*accuracy ([\d.]+)%", out, re.M).group(1))


def _flower_csv(tmp_path, offset=1000.0, scale=50.0):
    X, y = accelnn.datasets.make_flower(300, seed=0)
    X = X * [scale, 1 / scale] + [offset, -offset]  # far from standardized, and a constant
    X = np.c_[X, np.full(len(X), 7.0)]
    return _csv(tmp_path / "flower.csv", X, y), X, y


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-9), ("float32", 1e-2)])
def test_the_saved_model_takes_raw_rows(tmp_path, capsys, dtype, tol):
    """The standardization is folded into the first layer: the saved model's outputs on raw
    rows equal those of the same training, unfolded, on standardized rows (float64: to
    1e-9 relative; float32: loosely, a column here lies 25000 standard deviations from zero,
    and float32 holds its raw values to 1.5e-3 of a standard deviation), and `accelnn
    predict` on the raw CSV gives that model's accuracy."""
    path, X, y = _flower_csv(tmp_path)
    assert main(["train", path, "--dtype", dtype, "--epochs", "20", "--validation-split",
                 "0", "--output", str(tmp_path / "m.npz"), *QUIET]) == 0
    assert "(1 constant columns only centered)" in capsys.readouterr().out
    saved = accelnn.MLP.load(tmp_path / "m.npz", backend="numpy")
    scaler = Standardizer.fit(X, np.arange(len(X)))
    twin = accelnn.MLP([3, 64, 1], "relu", "sigmoid", seed=0, dtype=dtype, backend="numpy",
                       classes=np.unique(y))
    twin.fit(scaler.features(X), y, epochs=20, batch_size=32, optimizer="adam",
             metrics=("accuracy",))
    want = np.asarray(twin.forward(scaler.features(X)), dtype=np.float64)
    got = np.asarray(saved.forward(X), dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol if dtype == "float32" else 0)
    twin_accuracy = np.mean(np.asarray(twin.predict(scaler.features(X))) == y) * 100
    assert main(["predict", str(tmp_path / "m.npz"), path, "--target", "target"]) == 0
    accuracy = _score(capsys, r"accuracy ([\d.]+)% on 300")
    assert accuracy == pytest.approx(twin_accuracy, abs=0.01 if dtype == "float64" else 1)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("hidden", [[16], []])
def test_folding_a_regressor_restores_raw_units(dtype, rtol, hidden):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)) * [1, 100, 1e-3, 1] + [0, 1e3, 5, 2.0]
    X[:, 3] = 2.0  # constant: only centered
    y = np.c_[X[:, 0] * 3 + X[:, 1] / 100, X[:, 2] * 1e3] * [1, 10] + [500, -20]
    scaler = Standardizer.fit(X, np.arange(200), y)
    model = accelnn.MLP([4, *hidden, 2], "tanh", "identity", seed=0, dtype=dtype,
                        backend="numpy")
    model.fit(scaler.features(X), scaler.targets(y), epochs=5, batch_size=32,
              optimizer="adam", lr=0.01)
    want = np.asarray(model.forward(scaler.features(X)), float) * scaler.y_scale + \
        scaler.y_mean
    scaler.fold(model)
    np.testing.assert_allclose(np.asarray(model.forward(X), float), want, rtol=rtol)
    assert scaler.constant_columns() == 1


def test_an_existing_output_is_refused_without_force(tmp_path, capsys, monkeypatch):
    """The default --output model.npz used to be overwritten silently by the next run."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", "xor", "--epochs", "2", *QUIET]
    assert main(argv) == 0
    first = (tmp_path / "model.npz").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == ("accelnn train: error: --output 'model.npz' exists; "
                                         "pass --force to overwrite it, or give another "
                                         "path")
    assert (tmp_path / "model.npz").read_bytes() == first
    assert main([*argv, "--seed", "1", "--force"]) == 0
    assert (tmp_path / "model.npz").read_bytes() != first


def test_no_hidden_layer_and_a_validation_split(tmp_path, capsys):
    """A network without hidden layers predicted twice (the train and validation scores)
    used to fail in its scratch buffers."""
    assert main(["train", "xor", "--layers", "", "--epochs", "2", "--output",
                 str(tmp_path / "m.npz"), *QUIET]) == 0
    out = capsys.readouterr().out
    assert "MLP([2, 1]" in out and re.search(r"^validation: .*accuracy", out, re.M)
    model = accelnn.MLP([2, 1], output="identity", backend="numpy")
    X = np.ones((3, 2))
    assert np.array_equal(np.asarray(model.predict(X)), np.asarray(model.predict(X)))
