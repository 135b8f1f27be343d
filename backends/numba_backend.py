"""The Numba backend: NumPy arrays, BLAS GEMMs (np.matmul with out=), and the elementwise work
around them fused into `@njit(cache=True)` kernels (accelnn.backends.numba_kernels), each one
pass over its arrays, in place. float32 and float64 C-contiguous arrays take the kernels;
anything else falls back to the generic NumPy path of the base class.

Training is compiled whole (accelnn.backends.numba_train): `fused_train_step` is one call into
compiled code per step for dense networks of any depth, every activation, head and update kernel,
with L2 (numba_step: GEMMs through BLAS from compiled code, the elementwise work and the update
fused around them; numba_loops: hand-written matrix loops for the smallest networks, where they
beat BLAS calls), and `fused_train_epoch` runs a whole epoch of mini-batches (gathering, steps,
loss) in one call per chunk of batches.

Threading: every kernel is serial and every reduction has a fixed order, so results do not
depend on NUMBA_NUM_THREADS. BLAS threads follow accelnn.machine.BLAS_THREADS: one thread for
small GEMMs, the cores other processes leave free for large ones. Measured on the 2-core
development machine: `parallel=True` variants of these kernels ran slower than serial ones
when interleaved with OpenBLAS' own threads (which spin after each GEMM), and a second
OpenBLAS thread gained nothing on small GEMMs while the serial pass after it, reading half of
its output from the other core's cache, took 134-537 us instead of 79 us (issue #13).
"""

from __future__ import annotations

import numpy as np

from accelnn.backends.base import Backend
from accelnn.machine import BLAS_THREADS, blas_summary
from accelnn.optimizers import RULES

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# What this backend leaves to the generic path on purpose, by kind of fused work (see
# `NumbaBackend.fused_kernels`), each with the reason; tests/test_kernel_coverage.py fails on
# any activation, head or optimizer rule that has neither a kernel here nor an entry.
_LIBM = ("g(z) needs tanh/exp/log1p: in float64 these are scalar libm calls, which NumPy's SIMD "
         "ufuncs beat 10-20x; in float32 the kernel measured within 10% of NumPy on (128, 256) "
         "and (512, 2048) for tanh and sigmoid. So bias_act leaves it to NumPy (the whole-step "
         "kernel, whose float32 polynomials vectorize, keeps it)")
DELIBERATELY_GENERIC: dict[str, dict[str, str]] = {
    "activation": dict.fromkeys(("sigmoid", "tanh", "softplus"), _LIBM),
}

def _fast(*arrays) -> bool:
    """True when every array is a C-contiguous float32/float64 NumPy array of one dtype."""
    dtype = arrays[0].dtype
    return dtype in FLOATS and all(
        type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous for a in arrays)


class NumbaBackend(Backend):
    name = "numba"
    xp = np
    device = "cpu"

    @classmethod
    def probe(cls) -> str | None:
        try:
            import numba  # noqa: F401
        except ImportError as exc:
            return f"numba is not installed ({exc}); pip install accelnn[numba]"
        return None

    def __init__(self):
        # The BLAS that compiled code calls (np.dot in numba goes through SciPy's), loaded
        # now and handed to the thread policy: numba loads it only at its first compiled call,
        # and a policy that missed it left its threads alone.
        import scipy.linalg.cython_blas  # noqa: F401

        BLAS_THREADS.refresh()

        from accelnn.backends import numba_kernels

        self.k = numba_kernels
        self.kernels = self.fused_kernels()

    @classmethod
    def fused_kernels(cls) -> dict[str, dict]:
        """The kernels' tables, by kind (see Backend.fused_kernels): activation and head codes
        of numba_kernels, and its update kernels by rule name."""
        from accelnn.backends import numba_kernels as k

        generic = DELIBERATELY_GENERIC.get("activation", {})
        return {"activation": {a: c for a, c in k.ACT_CODES.items() if a not in generic},
                "activation gradient": k.ACT_CODES, "head": k.HEAD_CODES,
                "head output": k.HEAD_CODES, "optimizer": k.UPDATES}

    def info(self) -> dict:
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel kernel has run: report the configured choice
            layer = (f"{numba.config.THREADING_LAYER}, not started yet (it runs fit_many's "
                     f"members in parallel; a single model's kernels are serial, and its GEMMs "
                     f"use BLAS threads: see blas_threads)")
        return {**super().info(), "numba": numba.__version__, "threading_layer": layer,
                "num_threads": numba.get_num_threads(), "blas": blas_summary(),
                "blas_threads": BLAS_THREADS.describe()}

    # ----------------------------------------------------------------- primitives
    def bias_act(self, Z, b, act):
        code = self.kernels["activation"].get(act.name)
        if code is None or not _fast(Z, b):
            return super().bias_act(Z, b, act)
        self.k.bias_act(Z, b, code)
        return Z

    def act_grad(self, dA, A, act):
        code = self.kernels["activation gradient"].get(act.name)
        if code is None or not _fast(dA, A):
            return super().act_grad(dA, A, act)
        self.k.act_grad(dA, A, code)
        return dA

    def bias_grad(self, dZ, out):
        if dZ.shape[0] == 0 or not _fast(dZ, out):
            return super().bias_grad(dZ, out)
        self.k.bias_grad(dZ, out)
        return out

    def loss_delta(self, Z, Y, head, out, weights=None):
        code = self.kernels["head"].get(head.name)
        if (code is None or weights is not None or Z.shape[0] == 0 or Y.shape != Z.shape
                or not _fast(Z, Y, out)):
            # Y of one column broadcasts there; sample weights take the generic path
            return super().loss_delta(Z, Y, head, out, weights)
        dt = Z.dtype.type
        return dt(self.k.loss_delta(Z, Y, out, code, dt(1.0 / Z.shape[0])))

    def output(self, Z, head):
        code = self.kernels["head output"].get(head.name)
        if code is None or Z.shape[0] == 0 or not _fast(Z):
            return super().output(Z, head)
        self.k.activate(Z, code)
        return Z

    # ----------------------------------------------------------------- optimizer update
    def update(self, rule, params, grads, states, scalars):
        """The rule's kernel (numba_kernels.UPDATES) on each parameter, with the scalars cast
        to its dtype; the rule's reference on arrays the kernels don't take, and for rules
        without a kernel (a Rule of its own under a built-in name included)."""
        kernel = self.kernels["optimizer"].get(rule.name)
        if kernel is None or RULES.get(rule.name) is not rule:
            return super().update(rule, params, grads, states, scalars)
        dtype = typed = None
        for p, g, *state in zip(params, grads, *states):
            if not _fast(p, g, *state):
                rule.reference(np, p, g, *state, *scalars)
                continue
            if p.dtype is not dtype:
                dtype, typed = p.dtype, tuple(map(p.dtype.type, scalars))
            kernel(p, g, *state, *typed)

    def all_finite(self, a) -> bool:
        if not _fast(a):
            return super().all_finite(a)
        return bool(self.k.all_finite(a))

    def checked_logits(self, network, params, X, scratch):
        """The compiled forward pass (numba_train.checked_logits) for float32/float64 networks
        whose activations all have kernels; the generic path otherwise."""
        if np.dtype(network.dtype) not in FLOATS or not all(
                a.name in self.k.ACT_CODES for a in network.activations) or not _fast(X):
            return super().checked_logits(network, params, X, scratch)
        from accelnn.backends.numba_train import checked_logits

        return checked_logits(self, network, params, X, scratch)

    # ----------------------------------------------------------------- compiled training
    def fused_train_step(self, spec):
        """A compiled whole step for dense networks (numba_step; numba_loops for small ones)
        with the head, every activation and float32/float64; None otherwise. The update runs
        inside for the optimizers whose rule has a kernel (numba_kernels.UPDATES), through
        `update` afterwards for the others."""
        from accelnn.backends.numba_train import Compiled

        plan = Compiled.plan(self, spec)
        return None if plan is None else plan.step

    def fused_train_epoch(self, spec):
        """A compiled epoch of mini-batches (numba_step.train_epoch) for what fused_train_step
        takes with an optimizer whose update has a kernel; None otherwise. See
        Backend.fused_train_epoch."""
        from accelnn.backends.numba_train import Compiled

        plan = Compiled.plan(self, spec)
        return None if plan is None or plan.rule is None else plan.epoch
