"""accelnn.distributed: data-parallel training over MPI.

The MPI tests launch `mpiexec -n 2 python tests/test_distributed.py <case> <dir>` (this file is
also the worker) and skip, with the reason, when mpi4py or mpiexec is missing. They check that
2 ranks equal one process (float64, 1e-12 on the weights), that a memory-mapped X is read only
in each rank's rows, and that a configuration mismatch, a rank that left or a hung rank ends
the whole job with the error printed, within a bounded time, not a hang.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import accelnn
from accelnn import batches, distributed, steps

LAYERS = [4, 5, 3]
M = 101  # odd: the shards differ in size
CASES = {  # fit options of the equality test
    "full": dict(epochs=20, lr=0.5),
    "adam": dict(epochs=3, batch_size=16, optimizer="adam", lr=0.01),
    "in order": dict(epochs=3, batch_size=16, shuffle=False, lr=0.3),  # ranks with no rows
}
MEMMAP_ROWS, MEMMAP_COLS = 16384, 256  # 32 MiB of float64


def _data(m=M, n=LAYERS[0]):
    rng = np.random.default_rng(0)
    return rng.normal(size=(m, n)), rng.integers(0, LAYERS[-1], m)


def _model(layers=LAYERS):
    return accelnn.MLP(layers, "tanh", seed=1, dtype="float64", backend="numpy", l2=0.1)


def _max_rel(a, b) -> float:
    return max(float(np.abs(p - q).max() / np.abs(q).max())
               for pa, pb in zip(a, b) for p, q in zip(pa, pb))


# ---------------------------------------------------------------------- the MPI worker
def _rss(field: str, path: str | None = None) -> int:
    """Bytes of `field` in /proc/self/status, or of the mapping of `path` in smaps."""
    if path is None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise LookupError(field)
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if not line[:1].isupper() or line.split()[0].count("-") == 1:
            inside = line.rstrip().endswith(path)
        elif inside and line.startswith(field + ":"):
            total += int(line.split()[1]) * 1024
    return total


def _worker(case: str, out: Path) -> None:
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.rank
    result: dict = {}
    if case == "equal":
        X, y = _data()
        for name, opts in CASES.items():
            model = _model()
            history = distributed.fit(model, X, y, **opts)
            result[name] = {"weights": [[w.tolist() for w in pair]
                                        for pair in model.get_weights()],
                            "loss": history["loss"]}
    elif case == "memmap":
        X = np.load(out / "X.npy", mmap_mode="r")
        y = np.load(out / "y.npy")
        anon = _rss("RssAnon")
        model = accelnn.MLP([MEMMAP_COLS, 8, 3], seed=1, dtype="float64", backend="numpy")
        distributed.fit(model, X, y, epochs=2, batch_size=256, lr=0.05)
        result = {"bounds": distributed.shard_bounds(len(X), rank, MPI.COMM_WORLD.size),
                  "file_rss": _rss("Rss", str(out / "X.npy")),
                  "anon_growth": _rss("RssAnon") - anon,
                  "weights": [[w.tolist() for w in pair] for pair in model.get_weights()]}
    elif case in ("mismatch", "dead", "hung"):
        X, y = _data()
        layers = [4, 6, 3] if case == "mismatch" and rank == 1 else LAYERS

        def leave(epoch, logs, model):
            if rank == 1 and epoch == 2:
                if case == "dead":
                    model.stop_training = True  # leaves: rank 0 waits in the next all-reduce
                elif case == "hung":
                    time.sleep(600)  # as a stopped or deadlocked process would

        (out / f"rank{rank}.start").write_text(repr(time.time()))
        (out / f"rank{rank}.pid").write_text(str(os.getpid()))
        distributed.fit(_model(layers), X, y, epochs=50, lr=0.1,
                        timeout=30 if case == "mismatch" else 3, callbacks=[leave])
        result["returned"] = True  # an error never gets here: fit aborts the job
    (out / f"rank{rank}.json").write_text(json.dumps(result))


# ---------------------------------------------------------------------- launching
_LAUNCHER: dict = {}


def _mpiexec() -> str:
    """mpiexec, once it has started 2 ranks that import mpi4py; else skip with the reason."""
    if not _LAUNCHER:
        _LAUNCHER["skip"] = "mpi4py is not installed: pip install 'accelnn[mpi]'"
        try:
            import mpi4py  # noqa: F401
        except ImportError:
            pass
        else:
            where = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
            exe = shutil.which("mpiexec", path=where) or shutil.which("mpirun", path=where)
            _LAUNCHER["skip"] = "no mpiexec or mpirun beside Python or on PATH"
            if exe is not None:
                probe = subprocess.run([exe, "-n", "2", sys.executable, "-c",
                                        "from mpi4py import MPI; MPI.COMM_WORLD.Barrier()"],
                                       capture_output=True, text=True, timeout=60)
                _LAUNCHER.update(exe=exe, skip=None) if probe.returncode == 0 else \
                    _LAUNCHER.update(skip=f"{exe} cannot start 2 ranks: {probe.stderr[-300:]}")
    if _LAUNCHER["skip"]:
        pytest.skip(_LAUNCHER["skip"])
    return _LAUNCHER["exe"]


def _run(case: str, out: Path, limit: float) -> tuple[int, str, float]:
    """(exit status, stdout + stderr, the time.time() it ended) of a 2-rank job; a job still
    running after `limit` seconds is killed (its ranks too) and the test fails."""
    env = {**os.environ, "ACCELNN_BACKEND": "numpy", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([_mpiexec(), "-n", "2", sys.executable, __file__, case, str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *(int(p.read_text()) for p in out.glob("rank*.pid"))]:
            try:
                os.killpg(pid, signal.SIGKILL) if pid == proc.pid else os.kill(pid,
                                                                                signal.SIGKILL)
            except ProcessLookupError:
                pass
        text, _ = proc.communicate()
        pytest.fail(f"the job was still running after {limit:g} s:\n{text}")
    return proc.returncode, text, time.time()


def _launch(case: str, out: Path, limit: float = 90.0) -> tuple[dict, dict, float]:
    start = time.monotonic()
    status, text, _ = _run(case, out, limit)
    seconds = time.monotonic() - start
    got = [out / f"rank{r}.json" for r in (0, 1)]
    if not all(p.exists() for p in got):
        pytest.fail(f"a rank wrote no result (exit {status}):\n{text}")
    return json.loads(got[0].read_text()), json.loads(got[1].read_text()), seconds


def _failed_job(case: str, out: Path, limit: float = 60.0) -> tuple[str, float]:
    """The output of a job that must fail, and the seconds from rank 0's call of fit to the
    end of the job; asserts that it failed and that no rank returned from fit."""
    status, text, end = _run(case, out, limit)
    assert status != 0, text
    assert "aborting the job so that no rank waits for it" in text, text
    assert not (out / "rank0.json").exists()
    return text, end - float((out / "rank0.start").read_text())


def test_two_ranks_equal_one_process(tmp_path, record_property):
    rank0, rank1, _ = _launch("equal", tmp_path)
    X, y = _data()
    for name, opts in CASES.items():
        ref = _model()
        history = ref.fit(X, y, **opts)
        assert rank0[name] == rank1[name], f"{name}: the ranks' weights differ"
        err = _max_rel(rank0[name]["weights"], ref.get_weights())
        loss_err = float(np.max(np.abs(np.subtract(rank0[name]["loss"], history["loss"]))))
        record_property(f"{name} max rel weight error", err)
        print(f"{name}: weights max rel error {err:.2e}, loss max abs error {loss_err:.2e}")
        assert err < 1e-12, name
        assert loss_err < 1e-12, name


def test_memmap_each_rank_reads_only_its_rows(tmp_path, record_property):
    if not Path("/proc/self/smaps").exists():
        pytest.skip("needs /proc/self/smaps (Linux) to see which pages a rank touched")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(MEMMAP_ROWS, MEMMAP_COLS))
    y = rng.integers(0, 3, MEMMAP_ROWS)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    ranks = _launch("memmap", tmp_path)[:2]
    shard = X.nbytes // 2
    for r, got in enumerate(ranks):
        assert got["bounds"] == list(distributed.shard_bounds(MEMMAP_ROWS, r, 2))
        record_property(f"rank {r} file pages resident", got["file_rss"])
        record_property(f"rank {r} RssAnon growth", got["anon_growth"])
        print(f"rank {r}: rows {got['bounds']}, {got['file_rss'] / 2**20:.2f} MiB of the "
              f"{X.nbytes / 2**20:.0f} MiB file resident, RssAnon +"
              f"{got['anon_growth'] / 2**20:.2f} MiB")
        # its rows, plus the kernel's slack (fault-around, a large folio across the bound)
        assert 0.9 * shard <= got["file_rss"] <= 1.25 * shard
        assert got["anon_growth"] < shard  # streamed a batch at a time, never copied whole
    ref = accelnn.MLP([MEMMAP_COLS, 8, 3], seed=1, dtype="float64", backend="numpy")
    ref.fit(X, y, epochs=2, batch_size=256, lr=0.05)
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert _max_rel(ranks[0]["weights"], ref.get_weights()) < 1e-12


def test_configuration_mismatch_ends_the_job_naming_it(tmp_path):
    text, seconds = _failed_job("mismatch", tmp_path)
    assert "DistributedError: the ranks disagree" in text
    assert "layer_sizes differ (rank 0: [4, 5, 3]; rank 1: [4, 6, 3])" in text
    assert seconds < 20, "the mismatch is found by the check, not by the 30 s timeout"


def test_a_rank_that_leaves_ends_the_job_not_a_hang(tmp_path):
    text, seconds = _failed_job("dead", tmp_path)
    assert json.loads((tmp_path / "rank1.json").read_text()) == {"returned": True}
    assert "accelnn.distributed: rank 0 of 2 failed" in text
    assert re.search(r"DistributedError: rank 0: the all-reduce of step \d+ did not complete "
                     r"within 3 s", text), text
    assert 3 <= seconds < 30


@pytest.mark.slow
def test_a_hung_rank_is_ended_with_the_job(tmp_path):
    """Launched as `mpiexec -n 2 python worker.py` (no `-m mpi4py`): rank 1 hangs in a
    callback; rank 0 times out after 3 s, prints the error and aborts, which ends rank 1 too.
    Before, rank 0 raised and then waited forever in MPI's finalization."""
    text, seconds = _failed_job("hung", tmp_path)
    assert re.search(r"rank 0: the all-reduce of step \d+ did not complete within 3 s", text)
    assert 3 <= seconds < 30
    hung = int((tmp_path / "rank1.pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{hung}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{hung}").exists() or \
        Path(f"/proc/{hung}/stat").read_text().split()[2] == "Z", "the hung rank lives on"


# ---------------------------------------------------------------------- without a launcher
def test_import_without_mpi4py():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import numpy as np, accelnn, accelnn.distributed as d\n"
            "m = accelnn.MLP([2, 1], backend='numpy')\n"
            "try:\n"
            "    d.fit(m, np.zeros((4, 2)), np.zeros(4))\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'accelnn[mpi]'" in out.stdout


def test_shard_bounds_split_every_row_once():
    for m, size in ((101, 2), (7, 7), (10, 3)):
        parts = [distributed.shard_bounds(m, r, size) for r in range(size)]
        assert parts[0][0] == 0 and parts[-1][1] == m
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1
    for m, rank, size in ((3, 0, 4), (10, 2, 2), (10, -1, 2), (10, 0, 0)):
        with pytest.raises(ValueError):
            distributed.shard_bounds(m, rank, size)


def test_transport_selection(monkeypatch):
    class Fake:
        name = "cupy"

    numpy_backend = accelnn.get_backend("numpy")
    monkeypatch.setattr(distributed, "_nccl_available", lambda: True)
    assert distributed.transport(Fake()) == "nccl"
    assert distributed.transport(numpy_backend) == "mpi"
    monkeypatch.setattr(distributed, "_nccl_available", lambda: False)
    assert distributed.transport(Fake()) == "mpi"  # staged through the host
    assert distributed._nccl_available() in (True, False)


def _self_comm():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'accelnn[mpi]'")
    from mpi4py import MPI

    return MPI.COMM_SELF


def test_fit_rejects_bad_arguments():
    comm = _self_comm()
    X, y = _data()
    model = _model()
    before = model.get_weights()
    bad = [
        (dict(timeout=0), ValueError, "timeout"),
        (dict(timeout=float("nan")), ValueError, "timeout"),
        (dict(bogus=1), TypeError, "unknown fit options: bogus"),
        (dict(metrics=("accuracy",)), ValueError, "accuracy metrics"),
        (dict(validation_split=0.2), ValueError, "validation_split"),
        (dict(comm="world"), TypeError, "intracommunicator"),
        (dict(epochs=0), ValueError, "epochs"),
    ]
    for kwargs, exc, text in bad:
        with pytest.raises(exc, match=text):
            distributed.fit(model, X, y, **{"comm": comm, **kwargs})
    with pytest.raises(ValueError, match="2-D"):
        distributed.fit(model, X[:, 0], y, comm=comm)
    assert all(np.array_equal(a, b) for pa, pb in zip(model.get_weights(), before)
               for a, b in zip(pa, pb))


def test_a_failure_on_several_ranks_is_printed_and_aborts(monkeypatch, capsys):
    """Without a launcher: a stand-in communicator of 2 ranks records the abort."""
    class TwoRanks:
        rank, size, aborted = 1, 2, []

        def Abort(self, code):
            self.aborted.append(code)

    comm = TwoRanks()
    monkeypatch.setattr(distributed, "world", lambda c=None: comm)
    X, y = _data()
    with pytest.raises(ValueError, match="timeout"):  # Abort returned: only the stand-in does
        distributed.fit(_model(), X, y, comm=comm, timeout=0)
    assert comm.aborted == [1]
    err = capsys.readouterr().err
    assert err.startswith("accelnn.distributed: rank 1 of 2 failed; aborting the job")
    assert "ValueError: timeout must be a positive number of seconds, got 0" in err
    comm.size, comm.aborted = 1, []  # one process: nothing to abort, the error is raised
    with pytest.raises(ValueError, match="timeout"):
        distributed.fit(_model(), X, y, comm=comm, timeout=0)
    assert comm.aborted == [] and capsys.readouterr().err == ""


def test_one_rank_equals_fit():
    comm = _self_comm()
    X, y = _data()
    model, ref = _model(), _model()
    distributed.fit(model, X, y, comm=comm, epochs=3, batch_size=32, lr=0.1)
    ref.fit(X, y, epochs=3, batch_size=32, lr=0.1)
    assert _max_rel(model.get_weights(), ref.get_weights()) < 1e-13


# ---------------------------------------------------------------------- the seams
def test_reducer_step_takes_the_shared_path_and_empty_parts(monkeypatch):
    model = _model()
    X, y = _data()
    Xd, Yd, head, classes = model.encode(X, y)
    model.head, model.classes_ = head, classes
    model.state.set_optimizer(accelnn.SGD(0.1))

    def no_fast_path(spec):
        raise AssertionError("a step with a reducer must not ask for the fused path")

    monkeypatch.setattr(model.backend, "fused_train_step", no_fast_path)
    seen = []

    def reducer(loss, grads, m):
        seen.append(m)
        return loss, M
    step = steps.step_function(model.network, model.state, head, reducer)
    step(Xd[:10], Yd[:10], 0.1)
    step(Xd[:0], Yd[:0], 0.1)
    assert seen == [10, 0]


def test_part_batches_hold_this_process_rows():
    model = _model()
    X, y = _data()
    Xd, Yd, head, classes = model.encode(X[40:70], y, part=(40, M))
    assert np.array_equal(Yd.argmax(axis=1), y[40:70])
    data = batches.Data(model, Xd, Yd, part=(40, M))
    assert data.m == M
    order = np.random.default_rng(3).permutation(M)
    rows, weights = [], []
    for batch in data.batches(25, order):
        rows.append(batch.X.copy())
        weights.append(batch.share)
    assert weights == [25 / M] * 4 + [1 / M]  # the whole batches' shares
    assert sum(len(b) for b in rows) == 30
    want = [np.sort(order[lo:lo + 25][(order[lo:lo + 25] >= 40) & (order[lo:lo + 25] < 70)])
            for lo in range(0, M, 25)]
    for got, idx in zip(rows, want):
        assert np.array_equal(np.sort(got[:, 0]), np.sort(X[idx, 0]))


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))
