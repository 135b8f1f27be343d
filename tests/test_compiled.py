"""The numba backend's compiled training against the shared path, in float64 within 1e-12 (max
relative error, reported through `record_property`): the whole step (the BLAS step of
numba_step and the small-network loops of numba_loops) for every activation, head and
optimizer rule of the kernel tables, with L2; the compiled epoch of mini-batches for every
optimizer and schedule, a last partial batch, no shuffling and a memory-mapped X; no
allocation inside a compiled step; and the BLAS thread policy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed: the numba backend is skipped")

import accelnn  # noqa: E402
from accelnn.backends import numba_train  # noqa: E402
from accelnn.backends.base import Backend  # noqa: E402
from accelnn.backends.numba_backend import NumbaBackend  # noqa: E402
from accelnn.backends.numba_kernels import ACT_CODES, HEAD_CODES, UPDATES  # noqa: E402
from accelnn.machine import BlasThreads  # noqa: E402
from accelnn.optimizers import Adam, Optimizer, get_optimizer  # noqa: E402
from accelnn.schedules import SCHEDULES  # noqa: E402
from tests.conftest import max_rel_err  # noqa: E402

# Every rule of numba_kernels.UPDATES by an optimizer name that uses it, and AdamW besides.
OPTIMIZERS = {"sgd": "sgd", "momentum": "momentum", "nesterov": "nesterov", "adam": "adam",
              "rmsprop": "rmsprop"}
assert set(OPTIMIZERS) == set(UPDATES), "a new update kernel needs an optimizer here"
ALL_OPTIMIZERS = [*OPTIMIZERS.values(), "adamw"]


def _data(sizes, head, m, seed=7):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, sizes[0]))
    if head == "identity":
        return X, rng.standard_normal((m, sizes[-1]))
    if head == "sigmoid" and sizes[-1] > 1:
        return X, rng.integers(0, 2, (m, sizes[-1]))
    return X, rng.integers(0, max(2, sizes[-1]), m)


def _weights(model):
    return np.concatenate([np.r_[W.ravel(), b] for W, b in model.get_weights()])


def _steps(backend, sizes, act, head, opt, l2=0.01, steps=10, m=40):
    X, y = _data(sizes, head, m)
    model = accelnn.MLP(sizes, act, head, l2=l2, seed=1, dtype="float64", backend=backend)
    step = model.step_function(X, y, optimizer=opt, lr=0.05)
    return np.array([float(step()) for _ in range(steps)]), _weights(model)


def _agree(record_property, what, got, want, tol=1e-12):
    for part, a, b in (("losses", got[0], want[0]), ("weights", got[1], want[1])):
        err = max_rel_err(a, b)
        record_property(f"{what} {part}", err)
        assert err <= tol, f"{what} {part}: max relative error {err:.3g}"


@pytest.mark.parametrize("kernel", ["blas", "loops"])
@pytest.mark.parametrize("head", sorted(HEAD_CODES))
@pytest.mark.parametrize("act", sorted(ACT_CODES))
def test_compiled_step_equals_the_shared_path(act, head, kernel, monkeypatch,
                                              record_property):
    """Weights and losses of 10 compiled steps against the NumPy backend, for every activation,
    head and update kernel, with L2, on each of the two compiled steps."""
    sizes = [5, 7, 6, 3]
    monkeypatch.setattr(numba_train, "LOOP_STEP_MAX_MACS", 10**9 if kernel == "loops" else 0)
    plan = numba_train.Compiled.plan(NumbaBackend(), accelnn.MLP(
        sizes, act, head, backend="numpy").network.spec(accelnn.losses.get_head(head),
                                                        get_optimizer("adam")))
    assert plan is not None and plan.rule is not None
    for opt in ALL_OPTIMIZERS:
        _agree(record_property, f"{act} {head} {opt}",
               _steps("numba", sizes, act, head, opt), _steps("numpy", sizes, act, head, opt))


def test_compiled_step_without_hidden_layers_and_with_one_row(record_property):
    for sizes, m in (([6, 3], 40), ([4, 8, 2], 1)):
        _agree(record_property, f"{sizes} m={m}",
               _steps("numba", sizes, "tanh", "softmax", "adam", m=m),
               _steps("numpy", sizes, "tanh", "softmax", "adam", m=m))


class _Halving(Optimizer):
    """An optimizer with an update of its own: the compiled step leaves it to `update`."""

    name = "halving"

    def update(self, backend, params, grads, state, lr):
        for p, g in zip(params, grads):
            p -= 0.5 * lr * g


def test_an_optimizer_of_its_own_updates_outside(record_property):
    sizes = [5, 7, 3]
    runs = [_steps(be, sizes, "relu", "softmax", _Halving(0.1)) for be in ("numba", "numpy")]
    _agree(record_property, "own update", *runs)
    spec = accelnn.MLP(sizes, backend="numpy").network.spec(accelnn.losses.get_head("softmax"),
                                                            _Halving(0.1))
    assert NumbaBackend().fused_train_epoch(spec) is None


# ---------------------------------------------------------------------- the compiled epoch
def _fit(backend, X, y, *, sizes=(6, 9, 7, 3), head="softmax", **options):
    model = accelnn.MLP(list(sizes), "tanh", head, l2=0.01, seed=2, dtype="float64",
                        backend=backend)
    history = model.fit(X, y, **options)
    return np.array(history["loss"]), _weights(model)


def _three_ways(record_property, what, X, y, monkeypatch, **options):
    """The compiled epoch against the NumPy backend and against numba's shared loop."""
    compiled = _fit("numba", X, y, **options)
    numpy = _fit("numpy", X, y, **options)
    with monkeypatch.context() as patch:
        patch.setattr(NumbaBackend, "fused_train_epoch", Backend.fused_train_epoch)
        shared = _fit(NumbaBackend(), X, y, **options)
    _agree(record_property, f"{what} vs numpy", compiled, numpy)
    _agree(record_property, f"{what} vs the numba loop", compiled, shared)


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS)
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_compiled_epoch_equals_the_shared_loop(opt, schedule, monkeypatch, record_property):
    """4 epochs of 103 rows in batches of 16 (a last batch of 7): every optimizer and schedule."""
    X, y = _data([6, 3], "softmax", 103)
    _three_ways(record_property, f"{opt} {schedule}", X, y, monkeypatch, epochs=4,
                batch_size=16, optimizer=opt, lr=0.05, lr_schedule=schedule)


def test_compiled_epoch_is_used_and_chunked(monkeypatch):
    """A mini-batch fit runs the compiled epoch, in several calls when an epoch is long, each
    inside the weights' write guard."""
    calls = []
    train_epoch = numba_train.numba_step.train_epoch

    def spy(*args):
        calls.append(args[14:16])  # first, last
        return train_epoch(*args)

    monkeypatch.setattr(numba_train.numba_step, "train_epoch", spy)
    monkeypatch.setattr(numba_train, "EPOCH_CHUNK_MACS", 3 * 16 * (6 * 9 + 9 * 7 + 7 * 3) * 3)
    X, y = _data([6, 3], "softmax", 103)
    _fit("numba", X, y, epochs=1, batch_size=16, optimizer="adam")
    assert calls == [(0, 3), (3, 6), (6, 7)]


@pytest.mark.parametrize("head", ["sigmoid", "identity"])
def test_compiled_epoch_unshuffled_and_other_heads(head, monkeypatch, record_property):
    X, y = _data([5, 2], head, 50)
    _three_ways(record_property, f"{head} unshuffled", X, y, monkeypatch, sizes=(5, 8, 2),
                head=head, epochs=3, batch_size=8, optimizer="nesterov", lr=0.05,
                shuffle=False)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int16"])
def test_compiled_epoch_streams_a_memory_map(dtype, tmp_path, monkeypatch, record_property):
    """A memory-mapped X (any numeric dtype, converted as its rows are gathered) with a
    validation split, whose training rows the compiled epoch reads from the file."""
    X, y = _data([6, 3], "softmax", 120)
    X = (X * 100).astype(dtype) if dtype == "int16" else X.astype(dtype)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    options = dict(epochs=3, batch_size=16, optimizer="adam", lr=0.01, validation_split=0.2)
    _three_ways(record_property, f"mmap {dtype}", mapped, y, monkeypatch, **options)
    _agree(record_property, f"mmap {dtype} vs memory", _fit("numba", mapped, y, **options),
           _fit("numba", np.asarray(X), y, **options))


# ---------------------------------------------------------------------- no allocation
_COUNT_ALLOCATIONS = """
import json, numpy as np, accelnn
from numba.core.runtime import rtsys
from accelnn.backends import numba_loops, numba_step
arrays = [0]
def counting(kernel):  # numba wraps every array argument in a record of its own (one allocation)
    def call(*args):
        arrays[0] += sum(len(a) if isinstance(a, tuple) else isinstance(a, np.ndarray)
                         for a in args)
        return kernel(*args)
    return call
numba_step.train_step = counting(numba_step.train_step)
numba_loops.train_step = counting(numba_loops.train_step)
rng = np.random.default_rng(0)
X, y = rng.standard_normal((64, 12)), rng.integers(0, 3, 64)
out = {}
for name, sizes in (("blas", [12, 32, 32, 3]), ("loops", [12, 8, 3])):
    model = accelnn.MLP(sizes, "tanh", seed=0, backend="numba", dtype="float32")
    step = model.step_function(X, y, optimizer="adam", lr=0.01)
    step()
    before, arrays[0] = rtsys.get_allocation_stats().alloc, 0
    for _ in range(20):
        step()
    out[name] = rtsys.get_allocation_stats().alloc - before - arrays[0]
print(json.dumps(out))
"""


def test_a_compiled_step_allocates_nothing():
    """Numba's allocation count (NUMBA_NRT_STATS) over 20 steps of each compiled step, less
    the records of the array arguments."""
    env = {**__import__("os").environ, "NUMBA_NRT_STATS": "1"}
    run = subprocess.run([sys.executable, "-c", _COUNT_ALLOCATIONS], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {"blas": 0, "loops": 0}


# ---------------------------------------------------------------------- threads and checks
class _Lib:
    filepath = "libfakeblas.so"
    num_threads = 2  # its own count, before the policy

    def __init__(self):
        self.calls = []

    def set_num_threads(self, n):
        self.calls.append(n)


def test_thread_policy_by_gemm_size(monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "BLIS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    policy, lib = BlasThreads(), _Lib()
    monkeypatch.setattr(policy, "_controllers", lambda: [lib])
    monkeypatch.setattr(policy, "free_cores", lambda: 2)
    assert policy.for_gemm(policy.serial_max_macs) == 1
    assert policy.for_gemm(policy.serial_max_macs + 1) == 2
    for n in (1, 1, 2, 2, 1):
        policy.use(n)
    assert lib.calls == [1, 2, 1]  # set only when the count changes
    assert "1 BLAS thread for GEMMs up to" in policy.describe()
    policy.restore()  # the library's own count back (a peer in the benchmark runs on it)
    assert lib.calls[-1] == 2
    policy.use(1)
    assert lib.calls[-1] == 1
    found = []
    monkeypatch.setattr(policy, "_controllers", lambda: found.append(1) or [lib])
    policy.refresh()  # a BLAS loaded since: looked for again at the next use, which sets it
    policy.use(1)
    assert found == [1] and lib.calls == [1, 2, 1, 2, 1, 1]


def test_cores_that_other_processes_use_are_not_counted(monkeypatch):
    """free_cores: the cores less the CPU time other processes took (all busy ticks less this
    process's) over the last sample, at least 1."""
    ticks = iter([(0, 0), (200, 50), (400, 240), (600, 370)])  # 1.5 cores, 0.1, 0.7
    monkeypatch.setattr(accelnn.machine, "cpu_ticks", lambda: next(ticks))
    clock = iter([0.0, 1.0, 2.0, 3.0])
    monkeypatch.setattr(accelnn.machine.time, "monotonic", lambda: next(clock))
    policy = BlasThreads()
    policy.cores, policy._hz = 2, 100
    assert policy.free_cores() == 1  # others took 1.5 cores: 0.5 left, at least 1
    assert policy.free_cores() == 2  # others took 0.1 core
    assert policy.free_cores() == 2  # 0.7: less than 3/4 of a core


def test_a_users_thread_setting_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    policy = BlasThreads()
    policy.use(1)
    policy.use(2)
    assert policy.describe() == "as the user set them (OMP_NUM_THREADS=3)"
    assert "blas_threads" in NumbaBackend().info()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_all_finite(dtype):
    nb = NumbaBackend()
    a = np.ones((5, 7), dtype)
    assert nb.all_finite(a) and nb.all_finite(a[:, ::2])
    for bad in (np.nan, np.inf, -np.inf):
        b = a.copy()
        b[4, 6] = bad
        assert not nb.all_finite(b) and not nb.all_finite(b[:, ::2])


def test_an_adam_step_counts_its_steps():
    """The host's step count (Adam's t) advances once per compiled step and per batch of a
    compiled epoch, as in the shared path."""
    X, y = _data([6, 3], "softmax", 50)
    model = accelnn.MLP([6, 5, 3], seed=0, backend="numba", dtype="float64")
    opt = Adam(0.01)
    model.fit(X, y, epochs=2, batch_size=16, optimizer=opt)
    assert model.state.opt_state["t"] == 2 * 4


# ---------------------------------------------------------------------- inference
@pytest.mark.parametrize("blocks", [False, True], ids=["one-block", "row-blocks"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_forward_equals_numpy(dtype, blocks, monkeypatch, record_property):
    """predict, predict_proba and forward through the compiled forward pass, in one call or in
    row blocks on threads of their own, against the NumPy backend."""
    if blocks:
        monkeypatch.setattr(accelnn.machine.BLAS_THREADS, "serial_max_macs", 0)
        monkeypatch.setattr(accelnn.machine.BLAS_THREADS, "cores", 3)
    X, y = _data([9, 4], "softmax", 1001)
    got, want = (accelnn.MLP([9, 16, 12, 4], ["tanh", "relu"], "softmax", seed=3, dtype=dtype,
                             backend=be) for be in ("numba", "numpy"))
    got.set_weights(want.get_weights())
    err = max_rel_err(got.forward(X), want.forward(X))
    record_property(f"forward {dtype}", err)
    assert err <= (1e-12 if dtype == "float64" else 1e-5)
    assert np.array_equal(got.predict(X), want.predict(X))


@pytest.mark.parametrize("bad, message", [
    (np.nan, r"X contains NaN or Inf \(row 700, column 3: nan\)"),
    (-np.inf, r"X contains NaN or Inf \(row 700, column 3: -inf\)"),
    (1e300, r"X has values too large for float32 \(row 700, column 3: 1e\+300\)")])
def test_the_fused_check_names_a_bad_value(bad, message, monkeypatch):
    """NaN, Inf and values beyond float32 in X, found by the compiled forward pass (in the
    second of two row blocks here), are named by row and column as check_X names them."""
    monkeypatch.setattr(accelnn.machine.BLAS_THREADS, "serial_max_macs", 0)
    X, _ = _data([9, 4], "softmax", 1000)
    X[700, 3] = bad
    model = accelnn.MLP([9, 16, 4], "relu", "softmax", seed=3, dtype="float32",
                        backend="numba")
    for query in (model.predict, model.forward, model.predict_proba):
        with pytest.raises(ValueError, match=message):
            query(X)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_first_layer_that_overflows_is_no_error():
    """A finite X whose first GEMM overflows is computed as on the NumPy backend."""
    X = np.full((3, 4), 3e38)
    models = [accelnn.MLP([4, 5, 2], "relu", "softmax", seed=0, dtype="float32", backend=be)
              for be in ("numba", "numpy")]
    models[0].set_weights(models[1].get_weights())
    got, want = (m.forward(X) for m in models)
    assert np.array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_read_only_inputs(dtype, record_property):
    """A read-only X of the model's dtype (a frozen or memory-mapped array, used without a
    copy) trains and predicts like a writable one."""
    X, y = _data([6, 3], "softmax", 40)
    X = X.astype(dtype)
    frozen = X.copy()
    frozen.setflags(write=False)
    runs = []
    for data in (X, frozen):
        model = accelnn.MLP([6, 8, 3], "relu", seed=0, dtype=dtype, backend="numba")
        step = model.step_function(data, y, optimizer="adam", lr=0.01)
        losses = [float(step()) for _ in range(3)]
        model.fit(data, y, epochs=2, batch_size=16)
        runs.append((losses, _weights(model), model.predict(data), model.forward(data)))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("first", ["", "accelnn.MLP([4, 8, 2], seed=0, backend='numpy')"
                                   ".fit(np.ones((6, 4)), [0, 1] * 3, epochs=1)"])
def test_the_policy_sets_the_blas_of_compiled_code(first):
    """The thread policy controls the BLAS that compiled code calls (SciPy's), even when its
    first use comes before any compiled call, as a first predict's does, or before the numba
    backend exists (the NumPy backend's GEMMs follow the policy too)."""
    code = """
import numpy as np, accelnn
from threadpoolctl import threadpool_info
from accelnn.machine import BLAS_THREADS
FIRST
model = accelnn.MLP([4, 8, 2], seed=0, backend="numba", output="softmax")
BLAS_THREADS.use(1)
model.predict(np.ones((3, 4)))
print(sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}))
"""
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "BLIS_NUM_THREADS")}
    run = subprocess.run([sys.executable, "-c", code.replace("FIRST", first)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[-2] == "[1]"


def test_each_step_asks_the_policy_for_its_threads(monkeypatch):
    """The BLAS threads follow the free cores of the moment: every compiled step and every
    chunk of a compiled epoch asks the policy again (a kept call must not keep the answer)."""
    asked = []
    monkeypatch.setattr(accelnn.machine.BLAS_THREADS, "for_gemm",
                        lambda macs: asked.append(macs) or 1)
    X, y = _data([6, 3], "softmax", 40)
    model = accelnn.MLP([6, 8, 3], seed=0, backend="numba")
    step = model.step_function(X, y)
    for _ in range(3):
        step()
    assert asked == [40 * 6 * 8] * 3
