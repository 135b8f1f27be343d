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

from collections.abc import Callable
from typing import Any

import numpy as np

from accelnn.activations import Activation
from accelnn.losses import Head


class Backend:
    name = "generic"
    xp: Any = np
    device = "cpu"

    @classmethod
    def probe(cls) -> str | None:
        """Return None when the backend can run here, else the reason it cannot."""
        return None

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

    # ----------------------------------------------------------------- optimizer updates
    def sgd_update(self, params, grads, lr: float):
        """p <- p - lr * g for every parameter."""
        for p, g in zip(params, grads):
            g *= lr
            p -= g

    def momentum_update(self, params, grads, velocities, lr: float, momentum: float,
                        nesterov: bool):
        """v <- momentum v - lr g;  p <- p + v, or p + momentum v - lr g with Nesterov
        (scikit-learn's formulation)."""
        for p, g, v in zip(params, grads, velocities):
            v *= momentum
            g *= lr
            v -= g
            if nesterov:
                p -= g
                self.xp.multiply(v, momentum, out=g)
                p += g
            else:
                p += v

    def adam_update(self, params, grads, ms, vs, lr: float, beta1: float, beta2: float,
                    eps: float, step: int, weight_decay: float = 0.0):
        """Adam with the bias correction folded into the step size (scikit-learn, Kingma & Ba
        sec. 2); `weight_decay` > 0 adds AdamW's decoupled decay p <- p (1 - lr wd) first."""
        lr_t = lr * np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        for p, g, m, v in zip(params, grads, ms, vs):
            if weight_decay:
                p *= 1.0 - lr * weight_decay
            m *= beta1
            v *= beta2
            g *= 1.0 - beta1
            m += g
            g *= g
            g *= (1.0 - beta2) / (1.0 - beta1) ** 2
            v += g
            self.xp.sqrt(v, out=g)
            g += eps
            self.xp.divide(m, g, out=g)
            g *= lr_t
            p -= g

    def rmsprop_update(self, params, grads, sqs, lr: float, rho: float, eps: float):
        """sq <- rho sq + (1 - rho) g^2;  p <- p - lr g / (sqrt(sq) + eps)."""
        for p, g, sq in zip(params, grads, sqs):
            sq *= rho
            sq += (1.0 - rho) * (g * g)
            g *= lr
            g /= self.xp.sqrt(sq) + eps
            p -= g

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
