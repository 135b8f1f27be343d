"""The backend interface, with every primitive's generic default written once against `self.xp`.

A backend supplies arrays (`xp`, `asarray`, `to_numpy`, `synchronize`) and a handful of fused
primitives. The model in `accelnn.model` is written only against these; a backend overrides the
hot ones (the thinc `Ops` pattern) and calls `super()` for what its kernels don't cover.

Conventions shared by every primitive:
  * rows are samples: A (m, n), W (n_in, n_out), b (n_out,);
  * `out=` arguments are preallocated, C-contiguous buffers of the model dtype, reused across
    steps, so a training step makes no batch-sized allocations on the fast paths;
  * parameters and optimizer state are updated in place; the gradient buffers are scratch for
    the update (their values after an update are unspecified);
  * the loss comes back as a 0-d array of the backend and is left on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from accelnn.activations import Activation
from accelnn.losses import Head
from accelnn.machine import BLAS_THREADS
from accelnn.optimizers import Rule


class Backend:
    name = "generic"
    xp: Any = np
    device = "cpu"

    @classmethod
    def probe(cls) -> str | None:
        """Return None when the backend can run here, else the reason it cannot."""
        return None

    @classmethod
    def fused_kernels(cls) -> dict[str, Mapping[str, Any]]:
        """This backend's tables of fused kernels by kind of work, each keyed by name:
        "activation" (g in bias_act) and "activation gradient" (act_grad) by the names of
        accelnn.activations.ACTIVATIONS, "head" (loss_delta) and "head output" (output) by those
        of accelnn.losses.HEADS, "optimizer" (update) by rule name (accelnn.optimizers.RULES).
        A backend with kernels dispatches through these tables, declares what it leaves to
        the generic path on purpose in its module's DELIBERATELY_GENERIC ({kind: {name:
        reason}}), and must answer without a device (tests/test_kernel_coverage.py reads both
        everywhere). The generic backends have none: {}."""
        return {}

    # ----------------------------------------------------------------- data movement
    def asarray(self, x, dtype=None):
        """A C-contiguous array of this backend holding `x` (no copy when it already is one)."""
        if not isinstance(x, self.xp.ndarray) and hasattr(x, "__dlpack__"):
            try:
                x = self.xp.from_dlpack(x)
            except (TypeError, ValueError, RuntimeError, BufferError):
                pass  # a producer on another device: fall through to __array__
        return self.xp.ascontiguousarray(x, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def synchronize(self) -> None:
        """Block until queued device work is done (a no-op on the CPU)."""

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def copy(self, a):
        return self.xp.array(a, copy=True)

    def take_rows(self, X, idx, out):
        """out[i] = X[idx[i]]: gathers a mini-batch into a reused buffer."""
        self.xp.take(X, idx, axis=0, out=out)
        return out

    def all_finite(self, a) -> bool:
        return bool(self.xp.isfinite(a).all())

    def info(self) -> dict:
        """What `accelnn info` prints about this backend."""
        return {"device": self.device, "xp": f"{self.xp.__name__} {self.xp.__version__}"}

    # ----------------------------------------------------------------- primitives
    def matmul(self, a, b, out):
        """out <- a @ b (2-D, or stacks of matrices), on the BLAS threads the policy gives a
        GEMM of its multiply-adds (accelnn.machine.BLAS_THREADS; the GPU backend overrides
        this)."""
        BLAS_THREADS.use(BLAS_THREADS.for_gemm(out.size * a.shape[-1]))
        return self.xp.matmul(a, b, out=out)

    def bias_act(self, Z, b, act: Activation):
        """Z <- g(Z + b), in place."""
        Z += b
        act.forward(self.xp, Z)
        return Z

    def act_grad(self, dA, A, act: Activation):
        """dA <- dA * g'(Z), in place, with g' written from the layer's output A = g(Z)."""
        act.grad(self.xp, dA, A)
        return dA

    def bias_grad(self, dZ, out):
        """out <- sum of dZ over samples (rows)."""
        return self.xp.sum(dZ, axis=0, out=out)

    def loss_delta(self, Z, Y, head: Head, out, weights=None):
        """out <- (h(Z) - Y) / m; returns the head's loss (0-d) computed stably from Z. With
        `weights`, a column (m, 1) of normalised sample weights v (summing to 1 over a batch),
        the weighted form: out <- v (h(Z) - Y), loss = sum_i v_i l_i (accelnn.losses)."""
        if weights is None:
            return head.loss_delta(self.xp, Z, Y, out)
        return head.loss_delta(self.xp, Z, Y, out, weights)

    def output(self, Z, head: Head):
        """Z <- h(Z), in place: the output activation used for prediction."""
        head.activate(self.xp, Z)
        return Z

    def add_scaled(self, y, x, c: float):
        """y <- y + c * x, in place (L2 gradient term)."""
        y += c * x
        return y

    def sq_norm(self, x):
        """Sum of squares of x as a 0-d array (L2 loss term)."""
        return self.xp.vdot(x.ravel(), x.ravel())

    # ----------------------------------------------------------------- fused layer steps
    def dense_forward(self, A_prev, W, b, act: Activation, out):
        """out <- g(A_prev @ W + b): GEMM, bias and activation; `out` keeps A for backward."""
        self.matmul(A_prev, W, out)
        return self.bias_act(out, b, act)

    def dense_backward(self, dZ, A_prev, W, dW, db, dA_prev=None, act_prev=None):
        """dW <- A_prev.T @ dZ, db <- sum(dZ); when dA_prev is given, it becomes the previous
        layer's delta: dA_prev <- (dZ @ W.T) * g'_prev(A_prev)."""
        self.matmul(A_prev.T, dZ, dW)
        self.bias_grad(dZ, db)
        if dA_prev is not None:
            self.matmul(dZ, W.T, dA_prev)
            self.act_grad(dA_prev, A_prev, act_prev)
        return dW, db

    # ----------------------------------------------------------------- inference
    def checked_logits(self, network, params, X, scratch):
        """network.logits(params, X, scratch) (Z[L] in a new array), or None when X holds NaN
        or Inf, which the caller then locates. A backend may fuse the check into the forward
        pass: a non-finite X makes the first GEMM's output non-finite."""
        if not self.all_finite(X):
            return None
        return network.logits(params, X, scratch)

    # ----------------------------------------------------------------- optimizer update
    def update(self, rule: Rule, params, grads, states, scalars: tuple[float, ...]):
        """One optimizer step in place: for every parameter p, its gradient g and its state
        arrays (states holds one list per state array of the rule, parallel to params),
        rule.reference(xp, p, g, *state, *scalars). `rule` is an accelnn.optimizers.Rule;
        `scalars` are Python floats folded by the optimizer for this step."""
        reference, xp = rule.reference, self.xp
        for arrays in zip(params, grads, *states):  # (p, g, *state)
            reference(xp, *arrays, *scalars)

    # ----------------------------------------------------------------- repeated calls
    def replayed(self, fn):
        """fn, or an equivalent that is faster when called again and again on the same arrays
        (the cupy backend records it as a CUDA graph). fn takes backend arrays and returns one;
        the equivalent may return the same array object from every call, overwritten each time,
        and assumes that the arrays fn uses besides its arguments stay where they are."""
        return fn

    # ----------------------------------------------------------------- whole-step fast path
    def fused_train_step(self, spec) -> Callable | None:
        """A compiled whole training step for a network this backend recognizes, or None.

        `spec` is an `accelnn.model.StepSpec`. The callable has the signature
        `step(params, grads, opt_state, X, Y, lr) -> loss` and must equal the shared path
        (float64, 1e-12) -- a test holds every backend that offers one to that."""
        return None

    def fused_train_epoch(self, spec) -> Callable | None:
        """A compiled epoch of mini-batches for a network this backend recognizes, or None.

        The callable has the signature `epoch(params, grads, opt_state, X, Y, rows, order,
        batch, lr, writing) -> float`: it trains on the rows of the permutation `order`
        (numbering the rows of Y) in batches of `batch` (the last may be short), X's row i
        being X[rows[i]] (rows None: X[i]; X may be a memory-mapped host array, read a batch
        at a time), each step as `fused_train_step`'s, and returns the sum over batches of
        the loss times the batch's share of the rows. It changes the parameters only inside
        `with writing():` blocks. It must equal the shared loop (float64, 1e-12)."""
        return None
