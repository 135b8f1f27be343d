"""Data-parallel training over MPI (mpi4py), with NCCL (CuPy) for the all-reduce between GPUs.

Run the same script on every rank, `mpirun -n 4 python train.py`:

    import numpy as np, accelnn, accelnn.distributed
    X = np.load("X.npy", mmap_mode="r")            # each rank reads only its rows
    y = np.load("y.npy")                           # every rank holds all the targets
    model = accelnn.MLP([784, 256, 10], seed=0, dtype="float64")   # the same seed everywhere
    history = accelnn.distributed.fit(model, X, y, epochs=10, batch_size=512, lr=0.1)

Rank r holds the contiguous rows `shard_bounds(m, r, size)` of X. Every rank draws the same
seeded permutation of all m rows, so a global batch is the same set of rows as in one process;
each rank computes the mean loss and gradients over its rows of that batch (possibly none),
packs them, times its row count, with the loss and the count into one flat buffer, and one
all-reduce per step sums the buffers. Dividing by the summed count gives the means over the
global batch, so every rank applies the same update (the weights stay bit-identical) and the
result equals the single-process fit up to rounding (float64: about 1e-15 relative). L2 is
added once, after the all-reduce, for the global batch.

Transports (`transport`): with the cupy backend and NCCL available, the all-reduce runs over
NCCL on the device buffer (MPI only carries NCCL's unique id); otherwise over MPI's
Iallreduce on a host buffer (staged through the host for a GPU without NCCL). Waits are
bounded: a peer that died, hangs or runs a different number of steps makes every waiting
rank raise DistributedError after `timeout` seconds instead of hanging; the configuration of
every rank (architecture, dtype, backend, data shape, targets, fit options, starting weights
and RNG state) is compared collectively before the first step.

A failure ends the whole job: when fit raises on a rank of a communicator of 2 or more (a
DistributedError, any other exception, a KeyboardInterrupt), that rank prints the error with
its rank to stderr and calls comm.Abort(1), which ends every rank of the job, a hung one
included, however it was launched (`mpirun -n 4 python train.py` as well as `python -m
mpi4py`). A rank left waiting in MPI after an error would otherwise never exit (MPI's
finalization waits for the peer). On a communicator of one process the exception is raised
as usual.

The NCCL path has not been run on GPUs yet; the MPI path is tested under `mpirun -n 2`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import socket
import sys
import time
import traceback

import numpy as np

from accelnn import training
from accelnn._data import host_array
from accelnn._version import __version__
from accelnn.callbacks import History


class DistributedError(RuntimeError):
    """Ranks disagree on the configuration, or a peer did not take part in a collective in
    time (it died, failed, or runs different steps). The communicator may be left with a
    pending collective, so fit does not return it to the caller on a job of several ranks:
    it prints it and aborts the job (see fit)."""


def world(comm=None):
    """The communicator to train on: `comm`, or MPI.COMM_WORLD when None. Raises ImportError
    (with the install command) when mpi4py or its MPI library cannot be loaded, and TypeError
    for a `comm` that is not an mpi4py intracommunicator."""
    try:
        from mpi4py import MPI
    except ImportError as exc:  # also a missing or broken MPI library under mpi4py
        raise ImportError(f"accelnn.distributed needs mpi4py and an MPI library: pip install "
                          f"'accelnn[mpi]' ({exc})") from exc
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD), got "
                        f"{comm!r}")
    return comm


def shard_bounds(m: int, rank: int, size: int) -> tuple[int, int]:
    """The rows [lo, hi) that `rank` of `size` ranks holds of m rows: contiguous, in rank
    order, sizes differing by at most one. Rejects (ValueError) size < 1, a rank outside
    0..size-1, and m < size (a rank would hold no rows)."""
    if not (isinstance(size, int) and size >= 1 and isinstance(rank, int)
            and 0 <= rank < size):
        raise ValueError(f"need 0 <= rank < size, got rank {rank!r} of size {size!r}")
    if not (isinstance(m, (int, np.integer)) and m >= size):
        raise ValueError(f"{m} rows cannot be split over {size} ranks: every rank needs at "
                         f"least one row")
    return rank * m // size, (rank + 1) * m // size


def _nccl_available() -> bool:
    try:
        from cupy.cuda import nccl
    except ImportError:
        return False
    return bool(getattr(nccl, "available", False))


def transport(backend) -> str:
    """"nccl" for the cupy backend when CuPy's NCCL bindings are available, else "mpi"."""
    return "nccl" if backend.name == "cupy" and _nccl_available() else "mpi"


def _wait(done, timeout: float, what: str, rank: int) -> None:
    """Poll done() until it is true; DistributedError after `timeout` seconds. The first
    50 ms poll without pausing (as a blocking MPI call does: MPI makes progress on a
    non-blocking collective only while it is polled), then every millisecond."""
    start = time.monotonic()
    while not done():
        waited = time.monotonic() - start
        if waited > timeout:
            raise DistributedError(
                f"rank {rank}: {what} did not complete within {timeout:g} s: another rank "
                f"has died, failed (see its error) or is running different steps")
        if waited > 0.05:
            time.sleep(1e-3)


class _Mpi:
    """In-place sum of a buffer over MPI (Iallreduce on the host, bounded wait)."""

    def __init__(self, comm, backend, timeout: float):
        from mpi4py import MPI

        self.comm, self.backend, self.timeout, self.mpi = comm, backend, timeout, MPI

    def __call__(self, buf, what: str) -> float:
        host = buf if isinstance(buf, np.ndarray) else self.backend.to_numpy(buf)
        req = self.comm.Iallreduce(self.mpi.IN_PLACE, host, op=self.mpi.SUM)
        _wait(req.Test, self.timeout, what, self.comm.rank)
        if host is not buf:
            buf[...] = self.backend.asarray(host)
        return float(host[-1])


class _Nccl:
    """In-place sum of a CuPy buffer over NCCL on the current stream; MPI sends NCCL's
    unique id from rank 0. Waits are polled on an event, bounded; on a timeout the NCCL
    communicator is aborted so that no kernel stays blocked. Not yet run on GPUs."""

    def __init__(self, comm, timeout: float):
        import cupy
        from cupy.cuda import nccl

        self.cupy, self.nccl, self.timeout, self.rank = cupy, nccl, timeout, comm.rank
        uid = np.zeros(128, np.int8)  # NCCL_UNIQUE_ID_BYTES
        if comm.rank == 0:
            uid[:] = nccl.get_unique_id()
        req = comm.Ibcast(uid, root=0)
        _wait(req.Test, timeout, "the broadcast of the NCCL id", comm.rank)
        self.comm = nccl.NcclCommunicator(comm.size, tuple(int(c) for c in uid), comm.rank)

    def __call__(self, buf, what: str) -> float:
        nccl = self.nccl
        kind = nccl.NCCL_FLOAT64 if buf.dtype == np.float64 else nccl.NCCL_FLOAT32
        stream = self.cupy.cuda.get_current_stream()
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kind, nccl.NCCL_SUM,
                            stream.ptr)
        event = stream.record()
        try:
            _wait(lambda: event.done, self.timeout, what, self.rank)
        except DistributedError:
            self.comm.abort()
            raise
        return float(buf[-1])


class _Reducer:
    """The reducer of accelnn.steps.step_function: one all-reduce per step of the flat buffer
    [m * grads..., m * loss, m] (zeros from a rank with no rows in the batch); the sums
    divided by the summed m are the global batch's mean gradients and loss. With sample
    weights, m is a rank's sum of weights, so these are the weighted means."""

    def __init__(self, model, allreduce):
        be, grads = model.backend, model.state.grads
        sizes = [g.size for g in grads]
        self.xp, self.allreduce, self.steps = be.xp, allreduce, 0
        self.buf = be.zeros(sum(sizes) + 2, model.dtype)
        ends = np.cumsum(sizes)
        self.views = [self.buf[e - n:e].reshape(g.shape) for e, n, g in zip(ends, sizes, grads)]

    def __call__(self, loss, grads, m: int):
        xp, buf = self.xp, self.buf
        if m:
            for g, v in zip(grads, self.views):
                xp.multiply(g, m, out=v)
            buf[-2] = loss * m
            buf[-1] = m
        else:
            buf.fill(0)
        self.steps += 1
        total = self.allreduce(buf, f"the all-reduce of step {self.steps}")
        for g, v in zip(grads, self.views):
            xp.divide(v, total, out=g)
        return buf[-2] / total, float(total)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes() if a.dtype.kind != "O" else repr(a.tolist()).encode())
    return h.hexdigest()[:16]


def _plain(key: str, value):
    """A fit option as a JSON-able value that is equal on two ranks when the options are."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "config"):
        return value.config()
    if key == "validation_data":
        return [list(np.shape(a)) for a in value]
    if key == "sample_weight":
        return _digest(host_array(value, key))
    if key == "callbacks":
        return len(value)
    return repr(value)


def _describe(model, X, y, options: dict, mode: str) -> dict:
    """What must be the same on every rank, as JSON-able values."""
    be, saved = model.backend, model.state.saved()
    state = saved.params + [a for arrays in saved.opt_arrays.values() for a in arrays]
    rng = json.dumps(saved.rng_state, sort_keys=True)
    fit_opts = {k: _plain(k, v) for k, v in options.items()
                if k not in ("verbose", "checkpoint")}
    return {
        "accelnn": __version__, "backend": be.name, "transport": mode,
        "dtype": model.dtype.name, "layer_sizes": list(model.layer_sizes),
        "activations": [a.name for a in model.activations],
        "output": model.head.name if model.head else "auto", "l2": model.l2,
        "X shape": list(X.shape), "X dtype": str(X.dtype),
        "targets": _digest(y), "fit options": fit_opts,
        "starting weights and optimizer state": _digest(*state),
        "RNG state": hashlib.sha256(rng.encode()).hexdigest()[:16],
        "epoch": model.epoch_,
        "classes": None if model.classes_ is None else _digest(model.classes_),
    }


def _check_together(comm, desc: dict, gpu: str | None, timeout: float) -> None:
    """Allgather every rank's description (bounded waits); raise DistributedError on every
    rank, naming each difference, when they disagree or two ranks share one GPU."""
    from mpi4py import MPI

    mine = np.frombuffer(json.dumps([desc, gpu], sort_keys=True).encode(), np.uint8)
    sizes = np.zeros(comm.size, np.int64)
    req = comm.Iallgather(np.array([mine.size], np.int64), sizes)
    _wait(req.Test, timeout, "the configuration check", comm.rank)
    everyone = np.zeros(int(sizes.sum()), np.uint8)
    req = comm.Iallgatherv(mine, [everyone, sizes, MPI.UINT8_T])
    _wait(req.Test, timeout, "the configuration check", comm.rank)
    ends = np.cumsum(sizes)
    got = [json.loads(everyone[e - n:e].tobytes()) for e, n in zip(ends, sizes)]
    problems = []
    for key in got[0][0]:
        values = [d[key] for d, _ in got]
        if any(v != values[0] for v in values):
            per_rank = "; ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            problems.append(f"{key} differ ({per_rank})")
    gpus = [g for _, g in got]
    for r, g in enumerate(gpus):
        if g is not None and g in gpus[:r]:
            problems.append(f"ranks {gpus.index(g)} and {r} share the GPU {g}: give each "
                            f"rank its own (ACCELNN_DEVICE=<local rank>)")
    if problems:
        raise DistributedError("the ranks disagree, so training cannot start: "
                               + "; ".join(problems))


def _abort_on_failure(comm, exc: BaseException) -> None:
    """When `comm` spans several processes: print `exc` (with the rank) to stderr and abort
    the job, so that no rank waits forever for this one. Returns (and the caller re-raises)
    when there is nothing to abort: one process, or no usable communicator."""
    try:
        comm = world(comm)
        rank, size = comm.rank, comm.size
    except BaseException:  # no mpi4py, not a communicator: the error is the caller's
        return
    if size < 2:
        return
    try:
        sys.stdout.flush()
        sys.stderr.write(f"accelnn.distributed: rank {rank} of {size} failed; aborting the "
                         f"job so that no rank waits for it:\n"
                         + "".join(traceback.format_exception(exc)))
        sys.stderr.flush()
    finally:
        comm.Abort(1)


def _ends_the_job_on_failure(fit):
    """fit, aborting the job (_abort_on_failure) on any exception when run on several
    ranks."""
    @functools.wraps(fit)
    def run(model, X, y, *, comm=None, **kwargs):
        try:
            return fit(model, X, y, comm=comm, **kwargs)
        except BaseException as exc:
            _abort_on_failure(comm, exc)
            raise
    return run


@_ends_the_job_on_failure
def fit(model, X, y, *, comm=None, timeout: float = 120.0, **options) -> History:
    """Data-parallel `model.fit(X, y, **options)` over the ranks of `comm` (default
    MPI.COMM_WORLD); every rank calls it with the same arguments and returns the same
    History, and the model ends with the same weights on every rank.

    X: all m rows, on every rank (best a memory-mapped .npy, np.load(path, mmap_mode="r"):
        a rank then reads only its rows `shard_bounds(m, rank, size)`, all at once for a
        full batch, a batch at a time with a batch_size); only those rows go to the device.
    y: the targets of all m rows, on every rank (labels resolve the same everywhere); a
        sample_weight option likewise holds the weights of all m rows.
    options: those of MLP.fit. Progress (verbose) and checkpoints come from rank 0 only;
        resume_from is read by every rank (a shared file system); callbacks run on every
        rank and must decide the same (setting stop_training on one rank only makes the
        others time out). validation_data is evaluated whole by every rank.
    timeout: seconds any rank waits for the others in one collective (the configuration
        check or a step's all-reduce) before raising DistributedError. It bounds the time a
        rank may lag behind the others, so allow for the slowest step and a JIT compile.

    Raises, on every rank and before any step: ImportError without mpi4py/MPI; TypeError for
    an unknown option or a bad comm; ValueError for a timeout that is not a positive number,
    X that is not 2-D, fewer rows than ranks, accuracy metrics or validation_split (they
    would see one rank's rows), and whatever MLP.fit rejects; DistributedError when the
    ranks disagree on the backend, transport, dtype, layer sizes, activations, output, l2,
    the shape or dtype of X, the targets, the fit options, the starting weights, optimizer
    state or RNG state (create the model with the same seed everywhere), or when two ranks
    share a GPU. During training, DistributedError when a peer does not join a step within
    `timeout`. A rank-local error (e.g. NaN in one rank's rows) raises there, and the other
    ranks raise DistributedError after `timeout`.

    On a communicator of 2 or more ranks none of these reaches the caller: the rank that
    raises prints the error (with its rank and traceback) to stderr and calls comm.Abort(1),
    which ends the whole job with a non-zero exit status, whatever the launcher. This also
    holds for an exception from a callback and for a KeyboardInterrupt. With one rank (e.g.
    MPI.COMM_SELF) they are raised as usual.
    """
    comm = world(comm)
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    known = {n: p.default for n, p in inspect.signature(model.fit).parameters.items()
             if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"unknown fit options: {', '.join(unknown)}")
    options = {**known, **options}
    if not hasattr(X, "shape"):
        X = host_array(X, "X")
    if len(X.shape) != 2:
        raise ValueError(f"X must be 2-D (samples, features), got shape {X.shape}")
    m = int(X.shape[0])
    lo, hi = shard_bounds(m, comm.rank, comm.size)
    y = host_array(y, "y")
    mode = transport(model.backend)
    gpu = f"{socket.gethostname()}:{model.backend.device}" if model.backend.name == "cupy" \
        else None
    _check_together(comm, _describe(model, X, y, options, mode), gpu, timeout)
    allreduce = (_Nccl(comm, timeout) if mode == "nccl"
                 else _Mpi(comm, model.backend, timeout))
    if comm.rank != 0:
        options.update(verbose=0, checkpoint=None)
    return training.fit(model, X[lo:hi], y, **options, part=(lo, m),
                        reducer=_Reducer(model, allreduce))
