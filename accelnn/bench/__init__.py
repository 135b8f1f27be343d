"""Benchmarks: throughput and numerical agreement of every backend, side by side.

`accelnn bench` answers "which backend should I use on this machine, how much faster is it, and
do the numbers agree?" over the standard configurations of DESIGN.md section 5:

    seed   [2, 4, 1]                          tanh / sigmoid   full batch of 400 (flower data)
    mnist  [784, 256, 10]                     relu / softmax   batch 128
    wide   [1024, 2048, 2048, 10]             relu / softmax   batch 512
    deep   [64, 128 x 6, 10]                  relu / softmax   batch 32

    tabular [20, 64, 64, 2]                   relu / softmax   batch 32 (fit: 5,000 rows)

Phases, each on data already on the backend's device:

    predict     model.predict(X): class labels (mnist: of 1,000 rows)
    train_step  one SGD step of model.step_function(X, y): forward, backward and update
    fit_epoch   model.fit(X, y, batch_size=batch, optimizer=Adam): mini-batch Adam over a data
                set (mnist 60,000 rows, tabular 5,000 rows x 20 epochs; configs.CONFIGS)

Timing: the first call (JIT compilation, workspace allocation) is timed alone; `compile_s` is
that first call minus a steady call. Kernels are compiled once per process and dtype (and cached
on disk by Numba), so compile time shows on the first configuration that needs them. Then calls
are grouped into samples of at least `min_time / 200`, the device synchronized before each clock
read, and samples into blocks of about 0.2 s, until `min_time` has passed and at least
`min_samples` samples are taken; the median time per call and its interquartile range (IQR) of
the kept samples are reported.

Foreign load (load.py, measuring.py): around each block the CPU counters of the machine
(/proc/stat) and of this process are read; a block during which other processes took a CPU this
process could have used is contaminated and dropped, as is a block much slower than the fastest.
A row without enough clean samples, or with too wide a spread, is measured again (at most 3
rounds) and marked noisy if it stays so. The report's header says how much CPU other processes
used during the run; without /proc/stat (not Linux) only the spread is judged, and it says so.

Progress (progress.py): each row is reported on stderr as it finishes. Recommendation
(recommend.py): per configuration, the accelnn backend to use, named alone only when it leads
the others by more than the noise, with the ratio behind it; rows that stayed noisy because the
machine was busy decide nothing ("either", the ratio unconfirmed).

FLOPs count the GEMMs only (bias, activations and the update are a small extra), exactly:
predict 2 m sum(n_in n_out); a train step adds dW = A_prev.T @ dZ for every layer and
dA_prev = dZ @ W.T for every layer but the first, 2 m (3 sum(n_in n_out) - n_0 n_1) in all.
`gemm_fraction` is the achieved GFLOP/s over the rate of the backend's own matmul on exactly the
phase's GEMM shapes, measured in the same run: 1.0 means the phase runs at GEMM speed.

Agreement, in the same run: every backend starts from the same weights and data (rounded to its
dtype) as a float64 NumPy reference. `max_rel_err` is the largest max |a - b| / max |b| of the
forward output (predict rows) or of the loss and every gradient array (train_step rows), with
the limits of DESIGN.md section 4: 1e-12 in float64, 1e-5 in float32. `weights_rel_err` is that
of all the weights together after 10 training steps, limits 1e-12 and 1e-3 (WEIGHTS_LIMITS says
why float32 needs more). Rows beyond a limit are flagged, not hidden.

Peers: a plain NumPy transcription, PyTorch (eager, torch.optim), JAX (jitted, pipelined) and
scikit-learn (MLPClassifier) run the same network as extra rows marked peer, when they import;
they are never a dependency. Their errors are shown, not judged: a peer never fails a run or a
comparison.
"""

from __future__ import annotations

from .command import add_arguments, main
from .configs import (
    AGREEMENT_STEPS,
    CONFIGS,
    DTYPES,
    ERR_LIMITS,
    LR,
    PEERS,
    PHASES,
    RECOMMEND_BY,
    SCHEMA,
    WEIGHTS_LIMITS,
    BenchError,
    Config,
    Gemm,
    Inputs,
    gemm_operands,
    make_inputs,
)
from .load import LoadMonitor, parse_proc_stat, read_proc_stat
from .measuring import Timing, agreement, measure, reference, rel_err, time_once
from .peers import JaxSubject, TorchSubject
from .peers_more import PlainNumpySubject, SklearnSubject
from .progress import Progress, row_line
from .recommend import recommend
from .report import compare, load_line, plot, to_markdown
from .runner import parse_names, run
from .subjects import PEER_CLASSES, ModelSubject, backend_names, make_subject, unavailable_reason

__all__ = [
    "AGREEMENT_STEPS", "CONFIGS", "DTYPES", "ERR_LIMITS", "LR", "PEERS", "PEER_CLASSES", "PHASES",
    "RECOMMEND_BY", "SCHEMA", "WEIGHTS_LIMITS", "BenchError", "Config", "Gemm", "Inputs",
    "JaxSubject", "LoadMonitor", "ModelSubject", "PlainNumpySubject", "Progress",
    "SklearnSubject", "Timing", "TorchSubject", "add_arguments", "agreement", "backend_names",
    "compare", "gemm_operands", "load_line", "main", "make_inputs", "make_subject", "measure",
    "parse_names", "parse_proc_stat", "plot", "read_proc_stat", "recommend", "reference",
    "rel_err", "row_line", "run", "time_once", "to_markdown", "unavailable_reason",
]
