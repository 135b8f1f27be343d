"""fit's progress with verbose=1 prints a line per epoch where stderr is no terminal (logs,
CI, notebooks), as `accelnn train` does there; it used to print nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

import accelnn


def test_verbose_one_prints_lines_where_stderr_is_no_terminal(capsys):
    """fit(verbose=1) printed nothing when stderr was not a terminal."""
    X, y = accelnn.datasets.make_xor(60, seed=0)
    accelnn.MLP([2, 4, 1], seed=0, backend="numpy").fit(X, y, epochs=3, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" loss ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3",
                                                           "epoch 3/3"]


def test_accelnn_train_in_a_log_prints_its_progress(tmp_path):
    """Run as a process whose output goes to pipes, as in CI or a log file."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(accelnn.__file__)), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "accelnn.cli", "train", "xor", "--epochs",
                           "3", "--backend", "numpy", "--output", str(tmp_path / "m.npz")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^epoch 3/3 loss [\d.]+ .*val_loss", done.stdout, re.M), done.stdout
    assert np.load(tmp_path / "m.npz")["W1"].shape == (2, 64)
