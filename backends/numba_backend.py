"""The Numba backend: NumPy arrays, BLAS GEMMs (np.matmul with out=), and the elementwise work
around them fused into `@njit(cache=True)` kernels (accelnn.backends.numba_kernels), each one
pass over its arrays, in place. float32 and float64 C-contiguous arrays take the kernels;
anything else falls back to the generic NumPy path of the base class.

Small dense networks, where per-call overhead dominates, get a compiled whole training step
(`fused_train_step`): one kernel call does forward, loss, backward and SGD, with float32
tanh/exp/log1p as vectorized polynomials (`seed`: 5.5 us against NumPy's 34 us).

Threading: every kernel is serial and every reduction has a fixed order, so results do not
depend on NUMBA_NUM_THREADS. Measured on the 2-core development machine: `parallel=True`
variants of these kernels ran slower than serial ones when interleaved with OpenBLAS' own
threads (which spin after each GEMM), and the GEMMs, already threaded by BLAS, hold 90-98% of
the step time where the kernels could matter (mnist, wide). The numbers are in the issue report.
"""

from __future__ import annotations

import numpy as np

from accelnn.backends.base import Backend
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

# Whole-step kernel only when a sample's forward pass is at most this many multiply-adds: its
# loops over the samples beat BLAS plus per-call overhead below it and lose above it. Measured,
# float32, step time vs the shared numba path: [2,4,1] (12) batch 400 5.3x, [8,16,16,1] (400)
# batch 64 4.2x, [16,32,16,1] (1040) batch 128 1.6x, [32,32,10] (1344) batch 64 1.4x and
# batch 256 0.97x, [32,64,10] (2688) batch 32 1.08x and batch 128 0.84x, deep (91k) 0.33x.
FUSED_STEP_MAX_MACS = 2048


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

        from accelnn.machine import blas_summary

        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel kernel has run: report the configured choice
            layer = f"{numba.config.THREADING_LAYER} (not initialised; kernels are serial)"
        return {**super().info(), "numba": numba.__version__, "threading_layer": layer,
                "num_threads": numba.get_num_threads(), "blas": blas_summary()}

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

    # ----------------------------------------------------------------- whole-step fast path
    def fused_train_step(self, spec):
        """The whole-step kernel for dense networks with at least one hidden layer, at most
        FUSED_STEP_MAX_MACS multiply-adds per sample, float32/float64; None otherwise.
        An optimizer with the plain SGD rule runs inside the kernel, with its folded learning
        rate; other optimizers update through `update` afterwards (the kernel then leaves the
        weights alone)."""
        k, sizes = self.k, spec.layer_sizes
        macs = sum(a * b for a, b in zip(sizes, sizes[1:]))
        codes = [k.ACT_CODES.get(a.name) for a in spec.activations]
        if (np.dtype(spec.dtype) not in FLOATS or len(sizes) < 3 or None in codes
                or spec.head.name not in k.HEAD_CODES or macs > FUSED_STEP_MAX_MACS):
            return None
        dtype, opt = np.dtype(spec.dtype).type, spec.optimizer
        acts = np.array(codes, dtype=np.int64)
        head = k.HEAD_CODES[spec.head.name]
        in_kernel_sgd = opt.rule is RULES["sgd"]
        per_size: dict[int, tuple] = {}  # a fit meets at most two sizes: batch and rest

        def step(params, grads, opt_state, X, Y, lr):
            m = X.shape[0]
            if m not in per_size:
                rows = (sizes[0], *sizes[1:], *sizes[1:-1])  # X, every A, the hidden deltas
                per_size[m] = ((*(np.empty((n, m), dtype) for n in rows),
                                np.empty((m, sizes[-1]), dtype)),
                               dtype(1.0 / m), spec.l2 / (2 * m), dtype(spec.l2 / m))
            buffers, inv_m, l2_loss, l2_grad = per_size[m]
            sgd_lr = opt.step_scalars(opt_state, lr)[0] if in_kernel_sgd else 0.0
            loss = k.train_step(tuple(params[0::2]), tuple(params[1::2]),
                                tuple(grads[0::2]), tuple(grads[1::2]), acts, head, X, Y,
                                buffers, in_kernel_sgd, dtype(sgd_lr), inv_m, l2_loss, l2_grad)
            if not in_kernel_sgd:
                opt.update(self, params, grads, opt_state, lr)
            return dtype(loss)

        return step
