"""`accelnn predict` through accelnn.cli.main: --proba, the closing line, a regressor's
R², mean absolute and mean squared error, predictions written without spurious float32
digits, and mistakes (swapped arguments, the target still among the features, an output
that is not a regular file) answered with what to pass."""

from __future__ import annotations

import csv
import os
import re

import numpy as np
import pytest

import accelnn
from accelnn.cli import main

QUIET = ["--quiet", "--backend", "numpy"]


def _flower(tmp_path):
    X, y = accelnn.datasets.make_flower(200, seed=0)
    names = np.array(["red", "blue"])[y]
    path = tmp_path / "flower.csv"
    path.write_text("x1,x2,species\n" + "".join(f"{float(a)!r},{float(b)!r},{n}\n"
                                               for (a, b), n in zip(X, names)))
    return str(path)


def _trained(tmp_path, data, *options):
    model = str(tmp_path / "m.npz")
    assert main(["train", data, "--epochs", "40", "--output", model, *options, *QUIET]) == 0
    return model


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_proba_writes_a_probability_per_class(tmp_path, capsys):
    data = _flower(tmp_path)
    model = _trained(tmp_path, data)
    capsys.readouterr()
    out = tmp_path / "p.csv"
    assert main(["predict", model, data, "--target", "species", "--proba", "--output",
                 str(out)]) == 0
    rows = _rows(out)
    assert rows[0] == ["prediction", "proba_blue", "proba_red"] and len(rows) == 201
    P = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-6)
    picked = np.array(["blue", "red"])[P.argmax(axis=1)]
    assert (picked == [row[0] for row in rows[1:]]).mean() > 0.99  # ties at 0.5 aside
    err = capsys.readouterr().err.splitlines()
    assert err[-2] == (f"wrote 200 predictions and class probabilities of {model} for "
                       f"{data} to {out}")
    assert re.fullmatch(r"accuracy [\d.]+% on 200 samples", err[-1])


def test_regression_scores_and_shortest_float32_text(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = 150 + 40 * X[:, 0] - 25 * X[:, 1] + rng.normal(size=300)
    data = tmp_path / "r.csv"
    data.write_text("a,b,y\n" + "".join(f"{float(a)!r},{float(b)!r},{float(t)!r}\n"
                                         for (a, b), t in zip(X, y)))
    model = _trained(tmp_path, str(data), "--epochs", "60")
    capsys.readouterr()
    assert main(["predict", model, str(data), "--target", "y"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "prediction" and len(lines) == 301
    pred = np.asarray(accelnn.MLP.load(model, backend="numpy").predict(X))  # (n,): one output
    assert pred.dtype == np.float32
    # each cell is the shortest text that reads back as the float32 (191.78987, not
    # 191.7898712158203, the float64 of that float32)
    assert [np.float32(t) for t in lines[1:]] == pred.tolist()
    assert lines[1:] == [np.format_float_positional(p, unique=True, trim="0") for p in pred]
    assert max(len(t.replace("-", "").replace(".", "")) for t in lines[1:]) <= 9
    m = re.search(r"^R² ([\d.]+), mean absolute error ([\d.]+), mean squared error ([\d.]+) "
                  r"on 300 samples$", captured.err, re.M)
    assert m, captured.err
    err = pred.astype(np.float64) - y
    r2 = 1 - np.sum(err ** 2) / np.sum((y - y.mean()) ** 2)
    assert float(m.group(1)) == pytest.approx(r2, abs=1e-4) and r2 > 0.9
    assert float(m.group(2)) == pytest.approx(np.mean(np.abs(err)), rel=1e-4)
    assert float(m.group(3)) == pytest.approx(np.mean(err ** 2), rel=1e-4)
    assert "to standard output" in captured.err
    assert main(["predict", model, str(data), "--proba"]) == 2
    assert "--proba needs a classifier; " in capsys.readouterr().err


def test_mistakes_say_what_to_pass(tmp_path, capsys):
    data = _flower(tmp_path)
    model = _trained(tmp_path, data)
    capsys.readouterr()
    assert main(["predict", data, model]) == 2  # swapped
    assert capsys.readouterr().err.strip() == (
        f"accelnn predict: error: {data} is not a model file, but {model} is: the model "
        f"comes first, then the data: accelnn predict {model} {data}")
    assert main(["predict", data, data]) == 2
    assert (f"{data} is not a model file (not a .npz archive): MODEL is the file that "
            f"`accelnn train --output` writes") in capsys.readouterr().err
    assert main(["predict", model, data]) == 2  # the target still among the features
    assert capsys.readouterr().err.strip() == (
        f"accelnn predict: error: {data}, line 2, column 3 ('species'): 'red' is not a "
        f"number; if column 3 is the target, pass it to leave it out (--target species)")
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("a,b,y\n0.5,1.5,0\n2.5,3.5,1\n")
    assert main(["predict", model, str(numeric)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"accelnn predict: error: {numeric} has 3 feature columns, but the model {model} "
        f"takes 2 inputs; if one of them is the target, pass it to leave it out and score "
        f"the predictions against it, e.g. --target y for the last column")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_an_output_that_is_not_a_regular_file_is_refused(tmp_path, capsys):
    """The atomic write renames a new file over the output: given /dev/null, it replaced the
    device with a regular file (as root). A pipe stands in for the device here."""
    data = _flower(tmp_path)
    model = _trained(tmp_path, data)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    capsys.readouterr()
    for argv in (["predict", model, data, "--target", "species", "--output", str(pipe)],
                 ["train", data, "--output", str(pipe), "--force", *QUIET]):
        assert main(argv) == 2
        assert (f"--output '{pipe}' exists and is not a regular file (a device, a pipe or a "
                f"socket)") in capsys.readouterr().err
    assert not pipe.is_file() and pipe.exists()


def test_columns_are_matched_by_name_when_both_have_names(tmp_path, capsys):
    """A model trained on a CSV with a header keeps the features' names; predict takes a CSV's
    columns by name (another order is put right and said), and refuses other names, naming
    them, instead of predicting from the wrong columns."""
    X, y = accelnn.datasets.make_flower(200, seed=0)
    X = np.column_stack([X, X[:, 0] * 0.5 - X[:, 1]])
    header = ["a", "b", "c"]

    def write(name, order, names):
        path = tmp_path / name
        path.write_text(",".join([names[i] for i in order] + ["y"]) + "\n" + "".join(
            ",".join(repr(float(row[i])) for i in order) + f",{int(t)}\n"
            for row, t in zip(X, y)))
        return str(path)

    model = _trained(tmp_path, write("train.csv", [0, 1, 2], header))
    assert list(accelnn.MLP.load(model).feature_names_in_) == header
    outs = []
    for name, order in (("same.csv", [0, 1, 2]), ("shuffled.csv", [2, 0, 1])):
        out = tmp_path / f"p-{name}"
        capsys.readouterr()
        assert main(["predict", model, write(name, order, header), "--target", "y",
                     "--output", str(out)]) == 0
        outs.append(_rows(out))
    assert outs[0] == outs[1]
    assert "columns taken by name" in capsys.readouterr().err
    renamed = write("renamed.csv", [0, 1, 2], ["a", "b", "z"])
    assert main(["predict", model, renamed, "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert "unseen at fit time: ['z']" in err and "missing now: ['c']" in err


def test_a_closed_pipe_ends_predict_quietly(tmp_path):
    import subprocess
    import sys

    data = _flower(tmp_path)
    model = _trained(tmp_path, data)
    big = tmp_path / "big.csv"  # far more than a pipe holds: its reader leaves early
    lines = open(data).read().splitlines()
    big.write_text("\n".join([lines[0], *lines[1:] * 300]) + "\n")
    run = subprocess.run(f"{sys.executable} -m accelnn.cli predict {model} {big} "
                         f"--target species | head -1", shell=True, capture_output=True,
                         text=True, timeout=300)
    assert run.stdout.strip() == "prediction"
    assert "Broken pipe" not in run.stderr and "Traceback" not in run.stderr
