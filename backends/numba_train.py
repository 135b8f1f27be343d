"""The host side of the numba backend's compiled training (numba_step, numba_loops): which
kernel a network gets, the buffers of each batch size, the arguments in the kernels' form, the
optimizer's scalars, and the BLAS threads (accelnn.machine's policy); and of its compiled
inference (`checked_logits`)."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from accelnn.backends import numba_kernels as k
from accelnn.backends import numba_loops, numba_step
from accelnn.machine import BLAS_THREADS
from accelnn.optimizers import RULES, Optimizer

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# The whole-step kernel with hand-written matrix loops (numba_loops) instead of the BLAS step
# (numba_step) when a sample's forward pass is at most this many multiply-adds: its loops over
# the samples beat BLAS calls and their per-call overhead there, and lose beyond. Measured,
# float32 SGD step, loops vs BLAS step: seed [2,4,1] (12) batch 400 10.2 vs 31.0 us; tabular
# [20,64,64,2] (5504) batch 32 68.4 vs 22.2 us (Adam: 72.8 vs 25.5 us).
LOOP_STEP_MAX_MACS = 2048
# A compiled epoch runs at most this many multiply-adds (tens of ms) per call, holding the
# weights' write guard, so that a prediction during fit waits no longer than that.
EPOCH_CHUNK_MACS = 3e8


def in_kernel(opt: Optimizer) -> bool:
    """The optimizer's update is exactly its rule's kernel: a built-in rule with a kernel, and
    the update of Optimizer itself (not one a subclass wrote)."""
    rule = opt.rule
    return (type(opt).update is Optimizer.update and rule is not None
            and RULES.get(rule.name) is rule and rule.name in k.UPDATES)


class Compiled:
    """Compiled training of one network (a StepSpec) on the numba backend: `step` and
    `epoch`, with per-batch-size buffers kept here (a fit meets two sizes at most)."""

    def __init__(self, backend, spec, codes):
        self.backend, self.spec = backend, spec
        self.sizes, self.dtype = spec.layer_sizes, np.dtype(spec.dtype)
        self.acts = np.array(codes + [k.IDENTITY], dtype=np.int64)
        self.head = k.HEAD_CODES[spec.head.name]
        self.opt = spec.optimizer
        self.rule = k.RULE_CODES[self.opt.rule.name] if in_kernel(self.opt) else None
        self.macs = sum(a * b for a, b in zip(self.sizes, self.sizes[1:]))
        self.l2 = float(spec.l2)
        self._buffers: dict[tuple, tuple] = {}
        self._args: tuple = ((), ())
        self._kept_call: tuple | None = None
        self._no_scalars = np.zeros(0, self.dtype)

    @classmethod
    def plan(cls, backend, spec) -> Compiled | None:
        """The compiled training of `spec`, or None for what the kernels don't take (a head or
        activation without a code, a dtype other than float32/float64)."""
        codes = [k.ACT_CODES.get(a.name) for a in spec.activations]
        if (np.dtype(spec.dtype) not in FLOATS or None in codes
                or spec.head.name not in k.HEAD_CODES):
            return None
        return cls(backend, spec, codes)

    # ------------------------------------------------------------------ arguments
    def _arrays(self, params, grads, opt_state) -> tuple:
        """(Ws, bs, gWs, gbs, S1W, S1b, S2W, S2b) as tuples, rebuilt only when the lists
        given are other objects than last time."""
        key, args = self._args
        if len(key) == 3 and all(a is b for a, b in zip(key, (params, grads, opt_state))):
            return args
        states = [opt_state[name] for name in self.opt.state_arrays] if self.rule is not None \
            else []
        states += [grads] * (2 - len(states))  # stand-ins for the states a rule lacks
        args = tuple(tuple(a[i::2]) for a in (params, grads, *states) for i in (0, 1))
        self._args = ((params, grads, opt_state), args)
        return args

    def _loops(self) -> bool:
        return self.macs <= LOOP_STEP_MAX_MACS and len(self.sizes) >= 3

    def buffers(self, kind: str, m: int, cols: tuple[int, int] = (0, 0)) -> tuple:
        """The scratch of a step on m rows, kept for the last few (kind, size) pairs (a fit
        meets two batch sizes at most): kind "loops" for numba_loops, "blas" for numba_step,
        "gather" for an epoch's batch of X and Y (`cols` columns)."""
        key = (kind, m, cols)
        bufs = self._buffers.pop(key, None)
        if bufs is None:
            dt, sizes, n_out = self.dtype, self.sizes, self.sizes[-1]
            if kind == "loops":  # X.T, every A.T, the hidden deltas, the output
                rows = (sizes[0], *sizes[1:], *sizes[1:-1])
                bufs = ((*(np.empty((n, m), dt) for n in rows), np.empty((m, n_out), dt)),
                        np.empty(m * n_out))
            elif kind == "blas":
                bufs = (tuple(np.empty((m, n), dt) for n in sizes[1:]),
                        (np.empty((0, 0), dt), *(np.empty((m, n), dt) for n in sizes[1:-1])),
                        np.empty(m * n_out), np.empty(max(sizes[1:])))
            else:
                bufs = tuple(np.empty((m, n), dt) for n in cols)
        self._buffers[key] = bufs
        while len(self._buffers) > 4:
            del self._buffers[next(iter(self._buffers))]
        return bufs

    def scalars(self, opt_state, lr, steps: int | None = None) -> np.ndarray:
        """The rule's scalars for one step (1-D), or for `steps` steps (2-D), in the dtype."""
        if steps is None:
            return np.array(self.opt.step_scalars(opt_state, lr), self.dtype)
        return np.array([self.opt.step_scalars(opt_state, lr) for _ in range(steps)],
                        self.dtype).reshape(steps, -1)

    # ------------------------------------------------------------------ entry points
    def _call(self, params, grads, opt_state, X, Y) -> tuple:
        """(kernel, arguments before the scalars, arguments after, the largest GEMM's
        multiply-adds) of a step on X, Y, kept while the same objects come again (the batch
        buffers of a fit do)."""
        key = (params, grads, opt_state, X, Y)
        kept = self._kept_call
        if kept is not None and all(a is b for a, b in zip(kept[0], key)):
            return kept[1]
        dt = self.dtype
        Xc, Yc = np.ascontiguousarray(X, dt), np.ascontiguousarray(Y, dt)
        m = Xc.shape[0]
        update = self.rule is not None
        kind = "loops" if self._loops() else "blas"
        kernel = numba_loops.train_step if kind == "loops" else numba_step.train_step
        before = (*self._arrays(params, grads, opt_state), self.acts, self.head, Xc, Yc,
                  *self.buffers(kind, m), self.rule if update else 0)
        largest = m * max(a * b for a, b in zip(self.sizes, self.sizes[1:]))
        call = (kernel, before, (update, self.l2), largest)
        if Xc is X and Yc is Y:  # no conversion: the same objects will mean the same call
            self._kept_call = (key, call)
        return call

    def step(self, params, grads, opt_state, X, Y, lr):
        """One step on X, Y (Backend.fused_train_step); returns the loss in the dtype."""
        kernel, before, after, largest = self._call(params, grads, opt_state, X, Y)
        update = self.rule is not None
        sc = self.scalars(opt_state, lr) if update else self._no_scalars
        BLAS_THREADS.use(BLAS_THREADS.for_gemm(largest))  # the free cores of the moment
        loss = kernel(*before, sc, *after)
        if not update:
            self.opt.update(self.backend, params, grads, opt_state, lr)
        return self.dtype.type(loss)

    def epoch(self, params, grads, opt_state, X, Y, rows, order, batch, lr, writing):
        """One epoch of mini-batches (Backend.fused_train_epoch): float total loss."""
        dt = self.dtype
        X = np.asarray(X)  # a memory-mapped X stays mapped: rows are read as gathered
        Y = np.ascontiguousarray(Y, dt)
        order = np.ascontiguousarray(order, np.int64)
        rows = np.zeros(0, np.int64) if rows is None else np.ascontiguousarray(rows, np.int64)
        arrays = self._arrays(params, grads, opt_state)
        As, Ds, terms, acc = self.buffers("blas", batch)
        Xb, Yb = self.buffers("gather", batch, (X.shape[1], Y.shape[1]))
        n = math.ceil(order.size / batch)
        chunk = max(1, int(EPOCH_CHUNK_MACS // (3 * batch * self.macs)))
        total = 0.0
        largest = batch * max(a * b for a, b in zip(self.sizes, self.sizes[1:]))
        for first in range(0, n, chunk):
            last = min(first + chunk, n)
            BLAS_THREADS.use(BLAS_THREADS.for_gemm(largest))
            scs = self.scalars(opt_state, lr, last - first)
            with writing():
                total = numba_step.train_epoch(*arrays, self.acts, self.head, X, Y, rows,
                                               order, first, last, batch, Xb, Yb, As, Ds,
                                               terms, acc, self.rule, scs, self.l2, total)
        return float(total)


# ---------------------------------------------------------------------- inference
# Rows per block at least, when a large forward pass is split into row blocks over the cores.
MIN_BLOCK_ROWS = 64
_pool: list = []  # the threads that run the other row blocks, made at the first use
_pool_lock = threading.Lock()


def _other_cores(n: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(max_workers=n, thread_name_prefix="accelnn-rows"))
        return _pool[0]


def checked_logits(backend, network, params, X, scratch):
    """Backend.checked_logits, compiled (numba_step.forward_rows): the whole forward pass in
    one call, the NaN/Inf check on the first GEMM's output (in cache) instead of on X. When
    the policy gives the first GEMM more than one BLAS thread, the rows are split into one
    block per core instead, each run whole on its core with one BLAS thread: every core then
    reads only what it wrote (no cross-core traffic between a GEMM and the pass after it)."""
    sizes, dt = network.layer_sizes, network.dtype
    m = X.shape[0]
    acts = np.array([k.ACT_CODES[a.name] for a in network.activations] + [k.IDENTITY],
                    dtype=np.int64)
    hidden = scratch.take(backend, [(m, n) for n in sizes[1:-1]], dt)
    As = (*hidden, np.empty((m, sizes[-1]), dt))
    Ws, bs = tuple(params[0::2]), tuple(params[1::2])
    cores = min(BLAS_THREADS.for_gemm(m * sizes[0] * sizes[1]), m // MIN_BLOCK_ROWS)
    BLAS_THREADS.use(1)
    try:
        if cores <= 1:
            ok = numba_step.forward_rows(Ws, bs, acts, X, As, 0, m)
        else:
            edges = [m * i // cores for i in range(cores + 1)]
            pool = _other_cores(cores - 1)
            others = [pool.submit(numba_step.forward_rows, Ws, bs, acts, X, As, lo, hi)
                      for lo, hi in zip(edges[1:-1], edges[2:])]
            ok = numba_step.forward_rows(Ws, bs, acts, X, As, 0, edges[1])
            ok = all([f.result() for f in others]) and ok
    finally:
        scratch.give(hidden)
    return As[-1] if ok else None
