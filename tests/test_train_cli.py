"""`accelnn train` / `accelnn predict` (accelnn.train_cli, through a parser built here) and the
data loading behind them (accelnn.tabular): CSV, .npy/.npz, built-ins, and their errors."""

from __future__ import annotations

import argparse
import importlib.util
import re

import numpy as np
import pytest

import accelnn
from accelnn.cli import main
from accelnn.predict_cli import add_predict_parser, run_predict
from accelnn.tabular import load_data
from accelnn.train_cli import add_train_parser, run_train

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn is not installed: the digits are "
                                          "its copy")


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="accelnn")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_predict_parser(sub)
    args = parser.parse_args(argv)
    return {"train": run_train, "predict": run_predict}[args.command](args)


def _metric(text: str, label: str, name: str) -> float:
    match = re.search(rf"^{label}: .*{name} ([\d.]+)%?", text, re.M)
    assert match, text
    return float(match.group(1))


@needs_sklearn
def test_digits_97_percent_held_out(tmp_path, capsys):
    """[64, 64, 10] relu on scikit-learn's digits: 25% held out by the seeded split of
    `--validation-split`, and the estimator test's split (train_test_split, seed 0) through
    .npz files and `accelnn predict`."""
    from sklearn.model_selection import train_test_split

    common = ["--layers", "64", "--activation", "relu", "--optimizer", "adam", "--lr", "0.003",
              "--epochs", "30", "--batch-size", "32", "--seed", "0", "--backend", "numpy",
              "--quiet"]
    assert _main(["train", "digits", "--validation-split", "0.25",
                  "--output", str(tmp_path / "a.npz"), *common]) == 0
    out = capsys.readouterr().out
    assert "MLP([64, 64, 10], hidden=relu, output=softmax" in out
    val = _metric(out, "validation", "accuracy")
    X, y = accelnn.datasets.load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    np.savez(tmp_path / "train.npz", X=Xtr, y=ytr)
    np.savez(tmp_path / "test.npz", X=Xte, y=yte)
    assert _main(["train", str(tmp_path / "train.npz"), "--validation-split", "0",
                  "--output", str(tmp_path / "b.npz"), *common]) == 0
    capsys.readouterr()
    assert _main(["predict", str(tmp_path / "b.npz"), str(tmp_path / "test.npz"), "--target",
                  "y", "--output", str(tmp_path / "pred.csv"), "--backend", "numpy"]) == 0
    split = float(re.search(r"accuracy ([\d.]+)%", capsys.readouterr().err).group(1))
    pred = np.loadtxt(tmp_path / "pred.csv", skiprows=1)
    assert np.mean(pred == yte) * 100 == pytest.approx(split, abs=0.01)
    print(f"digits: {val}% on the --validation-split 0.25 rows, {split}% on "
          f"train_test_split(test_size=0.25, random_state=0)")
    assert val >= 97 and split >= 97


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_csv_classifier_with_text_labels_and_plot(tmp_path, capsys):
    X, y = accelnn.datasets.make_flower(200, seed=0)
    names = np.array(["red", "blue"])[y]
    data = _write(tmp_path / "flower.csv", ["x1,species,x2"] + [
        f"{a:.6f},{n},{b:.6f}" for (a, b), n in zip(X, names)])
    argv = ["train", data, "--target", "species", "--layers", "16,16", "--activation", "tanh",
            "--epochs", "60", "--lr", "0.01", "--batch-size", "full", "--backend", "numpy",
            "--output", str(tmp_path / "m.npz")]
    if importlib.util.find_spec("matplotlib"):
        argv += ["--plot", str(tmp_path / "loss.png")]
    assert _main(argv) == 0
    out = capsys.readouterr().out
    assert "200 samples, 2 features, classify, 2 classes" in out
    assert "epoch 60/60" in out and _metric(out, "train", "accuracy") > 80
    assert "--plot" not in argv or (tmp_path / "loss.png").stat().st_size > 1000
    model = accelnn.MLP.load(tmp_path / "m.npz")
    assert model.layer_sizes == (2, 16, 16, 1) and list(model.classes_) == ["blue", "red"]
    assert _main(["predict", str(tmp_path / "m.npz"), data, "--target", "1",
                  "--backend", "numpy"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "prediction" and len(lines) == 201 and set(lines[1:]) <= {"red", "blue"}
    assert re.search(r"accuracy [\d.]+% on 200 samples", captured.err)


def test_regression_from_a_npy_pair_streams_a_memory_map(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", X @ [1.0, -2.0, 0.5] + 0.1)
    Xl, yl = load_data(tmp_path / "X.npy", target=str(tmp_path / "y.npy"))
    assert isinstance(Xl, np.memmap) and yl.shape == (300,)
    assert _main(["train", str(tmp_path / "X.npy"), "--target", str(tmp_path / "y.npy"),
                  "--epochs", "40", "--lr", "0.01", "--quiet", "--backend", "numpy",
                  "--output", str(tmp_path / "r.npz")]) == 0
    out = capsys.readouterr().out
    assert "regress, 1 target" in out and "accuracy" not in out
    assert _metric(out, "validation", "loss") < 0.05
    np.save(tmp_path / "Xy.npy", np.c_[X, X @ [1.0, -2.0, 0.5] + 0.1])
    assert _main(["predict", str(tmp_path / "r.npz"), str(tmp_path / "Xy.npy"), "--target",
                  "-1", "--backend", "numpy"]) == 0
    err = capsys.readouterr().err
    assert float(re.search(r"mean squared error (\S+) on 300", err).group(1)) < 0.1


def test_load_data_forms(tmp_path):
    no_header = _write(tmp_path / "a.csv", ["1,2,0", "3,4,1", "5,6,1.0"])
    X, y = load_data(no_header)
    assert X.tolist() == [[1, 2], [3, 4], [5, 6]] and y.tolist() == [0, 1, 1]
    assert y.dtype == np.int64
    X, y = load_data(no_header, target=0)
    assert X.tolist() == [[2, 0], [4, 1], [6, 1]] and y.tolist() == [1, 3, 5]
    assert load_data(no_header, target=None)[1] is None
    header = _write(tmp_path / "b.csv", ["\ufeffa;b;label", " 0.5 ;1e3;cat", "", "2;-1;dog"])
    X, y = load_data(header, target="label", delimiter=";")
    assert X.tolist() == [[0.5, 1000.0], [2.0, -1.0]] and y.tolist() == ["cat", "dog"]
    X, y = load_data(_write(tmp_path / "c.csv", ["1,2,0.5", "3,4,1.5"]), header=True)
    assert X.tolist() == [[3, 4]] and y.tolist() == [1.5] and y.dtype == np.float64
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), labels=np.array(["a", "b", "a"]))
    X, y = load_data(tmp_path / "d.npz", target="labels")
    assert X.shape == (3, 2) and y.tolist() == ["a", "b", "a"]
    assert load_data(tmp_path / "d.npz", target=None)[1] is None
    X, y = load_data("xor")
    assert X.shape == (400, 2) and load_data("spirals", target=None)[1] is None


@pytest.mark.parametrize("lines, kwargs, match", [
    (["a,b,c", "1,2,3"], {"target": "d"},
     r"b\.csv: no column named 'd'; the columns are a, b, c"),
    (["1,2,3"], {"target": "c"}, r"b\.csv: no header row, so the target column 'c'"),
    (["1,2,3"], {"target": 3}, r"b\.csv: the target column index 3 is out of range for 3"),
    (["a,b,c", "1,2,3", "4,5", "6,7,8"], {}, r"b\.csv, line 3: 2 cells, but line 1 has 3"),
    (["a,b,c", "1,x,3"], {}, r"b\.csv, line 2, column 2 \('b'\): 'x' is not a number"),
    (["1,2,3", "4,,6"], {}, r"b\.csv, line 2, column 2: is empty"),
    (["a,b,c", "1,2,3", "nan,2,3"], {}, r"line 3, column 1 \('a'\): 'nan': NaN and Inf"),
    (["a,b,c", "1,2,inf"], {}, r"line 2, column 3 \('c'\): 'inf': NaN and Inf"),
    (["a,b,c", "1,2, "], {}, r"line 2, column 3 \('c'\): the target is empty"),
    (["a,b,c"], {}, r"b\.csv: no data rows"),
    ([""], {}, r"b\.csv: the file is empty"),
    (["y", "1"], {}, r"b\.csv: no feature columns besides the target"),
    (["1,2"], {"header": "maybe"}, "header must be True, False or 'auto'"),
    (["1,2"], {"target": 1.5}, "target must be a column name or index"),
])
def test_csv_errors_name_file_line_and_column(tmp_path, lines, kwargs, match):
    path = _write(tmp_path / "b.csv", lines)
    with pytest.raises(ValueError, match=match):
        load_data(path, **kwargs)


def test_numpy_file_errors(tmp_path):
    def fails(match, *args, **kwargs):
        with pytest.raises(ValueError, match=match):
            load_data(*args, **kwargs)

    fails(r"'nope\.csv' is neither a file nor a built-in data set \(flower, spirals, xor",
          "nope.csv")
    fails("has its own target", "xor", target="label")
    np.save(tmp_path / "X.npy", np.array([[1.0, 2.0], [np.nan, 3.0]]))
    fails(r"X\.npy: the array has NaN or Inf at row 1, column 0", tmp_path / "X.npy")
    np.save(tmp_path / "v.npy", np.ones(3))
    fails(r"v\.npy: the array must be 2-D, got shape \(3,\)", tmp_path / "v.npy")
    np.save(tmp_path / "t.npy", np.array([["a", "b"]]))
    fails(r"t\.npy: the array holds <U1, not numbers", tmp_path / "t.npy")
    np.save(tmp_path / "ok.npy", np.ones((3, 2)))
    np.save(tmp_path / "v2.npy", np.ones(2))
    fails(r"X \(.*ok\.npy\) has 3 rows but y \(.*v2\.npy\) has 2", tmp_path / "ok.npy",
          target=str(tmp_path / "v2.npy"))
    fails(r"the target 'y\.npy' is not a file", tmp_path / "ok.npy", target="y.npy")
    np.savez(tmp_path / "p.npz", X=np.ones((3, 2)))
    fails(r"p\.npz: no array named 'y'; it holds X", tmp_path / "p.npz")
    np.savez(tmp_path / "q.npz", X=np.ones((3, 2)), y=np.array([1.0, np.inf, 0.0]))
    fails(r"q\.npz: y has NaN or Inf at row 1", tmp_path / "q.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
    fails(r"bad\.npz: not a readable \.npz file", tmp_path / "bad.npz")
    np.save(tmp_path / "single.npy", np.ones((2, 2)))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    fails(r"single\.npz: a single array, not a \.npz archive", tmp_path / "single.npz")


def test_command_errors(tmp_path):
    def fails(exc, match, argv):
        with pytest.raises(exc, match=match):
            _main(argv)

    for bad in (["--layers", "64,x"], ["--layers", "0"], ["--batch-size", "0"],
                ["--header", "maybe"], ["--task", "cluster"]):
        with pytest.raises(SystemExit):
            _main(["train", "xor", *bad])
    for argv in (["predict", "m.npz"], ["predict", "m.npz", "xor", "--header", "maybe"]):
        with pytest.raises(SystemExit):
            _main(argv)
    one = _write(tmp_path / "one.csv", ["a,y", "1,0", "2,0"])
    fails(ValueError, "the target has 1 class; classification needs at least 2",
          ["train", one, "--output", str(tmp_path / "m.npz")])
    text = _write(tmp_path / "text.csv", ["a,y", "1,cat", "2,dog"])
    fails(ValueError, "cannot regress on text targets",
          ["train", text, "--task", "regress", "--output", str(tmp_path / "m.npz")])
    fails(ValueError, "unknown optimizer 'adagrad'",
          ["train", "xor", "--optimizer", "adagrad", "--output", str(tmp_path / "m.npz")])
    fails(ValueError, "--validation-split must be a number in",
          ["train", "xor", "--validation-split", "1.5", "--output", str(tmp_path / "m.npz")])
    assert not (tmp_path / "m.npz").exists()
    assert _main(["train", "xor", "--epochs", "1", "--quiet", "--backend", "numpy",
                  "--output", str(tmp_path / "m.npz")]) == 0
    fails(ValueError, r"one\.csv has 1 feature columns, but the model .*m\.npz takes 2",
          ["predict", str(tmp_path / "m.npz"), one, "--target", "y"])
    fails(ValueError, r"one\.csv is not a model file \(not a \.npz archive\): MODEL is",
          ["predict", one, "xor"])


def test_the_accelnn_command_reports_failures_without_a_traceback(tmp_path, capsys):
    from accelnn.cli import main

    assert main(["train", "flower", "--layers", "4", "--lr", "1e30", "--epochs", "3",
                 "--optimizer", "sgd", "--output", str(tmp_path / "m.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "accelnn train: error: training diverged" in err and "Traceback" not in err
    accelnn.MLP([2, 3, 1], backend="numpy").save(tmp_path / "auto.npz")
    np.savetxt(tmp_path / "d.csv", np.ones((2, 2)), delimiter=",")
    assert main(["predict", str(tmp_path / "auto.npz"), str(tmp_path / "d.csv")]) == 2
    assert "accelnn predict: error: the output is 'auto'" in capsys.readouterr().err


def test_a_missing_data_file_is_named_before_an_existing_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.npz").write_bytes(b"an earlier model")
    assert main(["train", "nosuch.csv"]) == 2
    err = capsys.readouterr().err
    assert "'nosuch.csv' is neither a file nor a built-in data set" in err and "--force" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"accelnn {accelnn.__version__}"


@pytest.mark.parametrize("compiles", [0, 5])
def test_a_first_run_says_its_time_includes_compiling(tmp_path, monkeypatch, capsys, compiles):
    import contextlib

    import accelnn.train_cli as train_cli

    monkeypatch.setattr(train_cli, "numba_compiles",
                        lambda: contextlib.nullcontext(lambda: compiles))
    assert main(["train", "xor", "--epochs", "2", "--quiet", "--backend", "numpy",
                 "--output", str(tmp_path / "m.npz")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("trained "))
    assert ("compiling the numba kernels" in line) == bool(compiles)


def test_numba_compilations_are_counted():
    pytest.importorskip("numba")
    from numba import njit

    from accelnn.cli_shared import numba_compiles

    with numba_compiles() as compiled:
        njit(lambda x: x + 1)(1)
    assert compiled() >= 1
    with numba_compiles() as compiled:
        pass
    assert compiled() == 0
