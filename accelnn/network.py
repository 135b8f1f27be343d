"""The network math, in one place: initial weights, the forward pass, the loss and its gradients
over a list of parameters `[W1, b1, W2, b2, ...]`, written only against the backend primitives.

For layers l = 1..L, rows are samples (X is (m, n0), W[l] is (n[l-1], n[l])):

    forward:   Z[l] = A[l-1] @ W[l] + b[l]        A[l] = g[l](Z[l])        A[0] = X
    backward:  dZ[L] = (A[L] - Y) / m             (matched output/loss pairs: accelnn.losses)
               dW[l] = A[l-1].T @ dZ[l]           db[l] = sum(dZ[l], axis=0)
               dZ[l-1] = (dZ[l] @ W[l].T) * g'[l-1](Z[l-1])
    L2:        loss += l2/(2m) sum ||W||^2        dW[l] += l2/m W[l]   (scikit-learn's alpha)

The column-major notation of the classic two-layer derivation (X (n0, m), W (n_out, n_in)) is
the same math transposed. Every g' is written from A[l] (accelnn.activations), so the forward
pass overwrites Z with A in place and backward needs only the stored A's.

A `Network` holds no mutable state: the parameters, gradients and buffers are its callers'
(the training state's for training; each inference call's own for queries), so one network
serves any number of threads at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from accelnn.activations import Activation, get_activation
from accelnn.losses import Head
from accelnn.optimizers import Optimizer

IDENTITY = get_activation("identity")


class StepSpec(NamedTuple):
    """What a backend needs to decide whether it has a compiled whole-step path."""

    layer_sizes: tuple[int, ...]
    activations: tuple[Activation, ...]  # one per hidden layer
    head: Head
    l2: float
    optimizer: Optimizer
    dtype: np.dtype


def check_layer_sizes(layer_sizes) -> tuple[int, ...]:
    """`layer_sizes` as a tuple of at least two positive integers; ValueError otherwise."""
    try:
        sizes = tuple(int(n) for n in layer_sizes)
        ok = len(sizes) >= 2 and all(n >= 1 and n == v and not isinstance(v, bool)
                                     for n, v in zip(sizes, layer_sizes))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError("layer_sizes must list at least two positive integers "
                         f"(inputs, ..., outputs), got {layer_sizes!r}")
    return sizes


def hidden_activations(spec, n_hidden: int) -> tuple[Activation, ...]:
    """One Activation per hidden layer from one name (for all) or a list of names."""
    if isinstance(spec, (list, tuple)):
        if len(spec) != n_hidden:
            raise ValueError(f"hidden_activation lists {len(spec)} names for {n_hidden} "
                             f"hidden layers")
        return tuple(get_activation(a) for a in spec)
    return (get_activation(spec),) * n_hidden


class Workspace:
    """Buffers for a batch of m rows: A[l] (m, n[l]) for every layer (the last one holds Z[L],
    then dZ[L]) and, when `backward`, D[l] (m, n[l]) for the hidden deltas."""

    def __init__(self, backend, sizes: Sequence[int], m: int, dtype, backward: bool = True):
        self.A = [backend.empty((m, n), dtype) for n in sizes[1:]]
        self.D = [backend.empty((m, n), dtype) for n in sizes[1:-1]] if backward else []
        self.batch: tuple | None = None  # gathered (X, Y) mini-batch buffers (training)


class Scratch:
    """Hidden-layer buffers for inference, lent to one call at a time: a call takes the kept
    set when its shapes fit (else allocates its own) and gives it back when done. At most one
    set is kept, and only when it holds at most `limit` bytes, so a model retains no more than
    that after inference returns. Safe to use from several threads: the set is kept in a list
    whose append and pop are atomic, so no two calls ever hold it at once."""

    def __init__(self, limit: int = 1 << 20):
        self.limit = limit
        self._kept: list = []

    def take(self, backend, shapes: list[tuple[int, int]], dtype) -> list:
        try:
            kept = self._kept.pop()
        except IndexError:
            kept = None
        # (a network without hidden layers keeps an empty set: nothing to compare)
        if (kept is not None and [a.shape for a in kept] == shapes
                and all(a.dtype == dtype for a in kept)):
            return kept
        return [backend.empty(s, dtype) for s in shapes]

    def give(self, buffers: list) -> None:
        if sum(a.nbytes for a in buffers) <= self.limit:
            self._kept.append(buffers)
            del self._kept[:-1]  # calls giving back at once: the last one's set stays


class Network:
    """The architecture and math of an MLP: `layer_sizes = (n0, ..., nL)`, one activation per
    hidden layer (the output layer's pre-activation Z[L] is left to the head), scikit-learn's
    L2 `alpha` as `l2`, on `backend` in `dtype`. Every method takes the parameters as a list
    [W1, b1, ..., WL, bL] of backend arrays, W[l] of shape (n[l-1], n[l]), b[l] of (n[l],)."""

    def __init__(self, layer_sizes: tuple[int, ...], activations: tuple[Activation, ...],
                 l2: float, backend, dtype: np.dtype):
        self.layer_sizes, self.activations, self.l2 = layer_sizes, activations, l2
        self.backend, self.dtype = backend, dtype
        self.n_layers = len(layer_sizes) - 1

    def activation(self, l: int) -> Activation:
        """g[l+1], the activation of layer l (0-based); identity for the output layer."""
        return self.activations[l] if l < len(self.activations) else IDENTITY

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Initial [W1, b1, ...] as float64 host arrays: W[l] uniform in +-bound, the bound
        chosen by the layer's activation (Glorot & Bengio 2010, He et al. 2015 for ReLU), as
        scikit-learn does; biases zero. Drawn from `rng` in layer order."""
        params = []
        for l, (n_in, n_out) in enumerate(zip(self.layer_sizes, self.layer_sizes[1:])):
            bound = self.activation(l).init_bound(n_in, n_out)
            params.append(rng.uniform(-bound, bound, size=(n_in, n_out)))
            params.append(np.zeros(n_out))
        return params

    def workspace(self, m: int, backward: bool = True) -> Workspace:
        return Workspace(self.backend, self.layer_sizes, m, self.dtype, backward)

    def spec(self, head: Head, optimizer: Optimizer) -> StepSpec:
        return StepSpec(self.layer_sizes, self.activations, head, self.l2, optimizer,
                        self.dtype)

    # ------------------------------------------------------------------ forward
    def forward(self, params, X, A: list):
        """The forward pass of X (m, n0) into the buffers A[l] (m, n[l]); returns A[L-1],
        which holds Z[L], the output layer's pre-activation (logits)."""
        be, prev = self.backend, X
        for l in range(self.n_layers):
            prev = be.dense_forward(prev, params[2 * l], params[2 * l + 1], self.activation(l),
                                    A[l])
        return prev

    def logits(self, params, X, scratch: Scratch):
        """Z[L] (m, nL) for X in a new array owned by the caller; the hidden layers use
        buffers lent by `scratch`."""
        m = X.shape[0]
        hidden = scratch.take(self.backend, [(m, n) for n in self.layer_sizes[1:-1]],
                              self.dtype)
        try:
            return self.forward(params, X, [*hidden, self.backend.empty((m, self.layer_sizes[-1]),
                                                                        self.dtype)])
        finally:
            scratch.give(hidden)

    # ------------------------------------------------------------------ loss and gradients
    # Sample weights: `weights` is a column (m, 1) of the rows' weights w on the backend and
    # `weight_sum` their sum on the host. The loss and every gradient are then the weighted
    # means over the rows, sum_i w_i l_i / sum_i w_i (accelnn.losses), and the L2 term counts
    # sum(w) rows instead of m (scikit-learn's `sw_sum`), so that integer weights give exactly
    # the fit on repeated rows.
    def loss(self, params, head: Head, X, Y, ws: Workspace, weights=None, weight_sum=None):
        """The mean loss over the rows of X (with the L2 term) as a 0-d backend array; leaves
        dZ[L] in the workspace."""
        Z = self.forward(params, X, ws.A)
        if weights is None:
            return self.backend.loss_delta(Z, Y, head, Z) + self.l2_loss(params, X.shape[0])
        v = weights * (1.0 / weight_sum)
        return self.backend.loss_delta(Z, Y, head, Z, v) + self.l2_loss(params, weight_sum)

    def loss_grads(self, params, grads, head: Head, X, Y, ws: Workspace, weights=None,
                   weight_sum=None):
        """The loss at `params` (0-d backend array, L2 term included); fills `grads`."""
        m = X.shape[0] if weights is None else weight_sum
        return self.add_l2(params, grads, self.data_loss_grads(params, grads, head, X, Y, ws,
                                                               weights, weight_sum), m)

    def data_loss_grads(self, params, grads, head: Head, X, Y, ws: Workspace, weights=None,
                        weight_sum=None):
        """The data part of `loss_grads`: the mean loss over the rows of X and its gradients
        (into `grads`), without the L2 term, which `add_l2` adds for a batch of m rows."""
        be = self.backend
        Z = self.forward(params, X, ws.A)
        if weights is None:
            loss = be.loss_delta(Z, Y, head, Z)
        else:
            loss = be.loss_delta(Z, Y, head, Z, weights * (1.0 / weight_sum))
        delta = Z
        for l in reversed(range(self.n_layers)):
            A_prev = ws.A[l - 1] if l else X
            dA_prev = ws.D[l - 1] if l else None
            act_prev = self.activations[l - 1] if l else None
            be.dense_backward(delta, A_prev, params[2 * l], grads[2 * l], grads[2 * l + 1],
                              dA_prev, act_prev)
            delta = dA_prev
        return loss

    def add_l2(self, params, grads, loss, m: float):
        """loss + l2/(2m) sum ||W||^2, and dW += l2/m W in `grads` (nothing without L2); m is
        the rows of the batch, or the sum of their weights."""
        if not self.l2:
            return loss
        for l in range(self.n_layers):
            self.backend.add_scaled(grads[2 * l], params[2 * l], self.l2 / m)
        return loss + self.l2_loss(params, m)

    def l2_loss(self, params, m: float):
        """l2 / (2m) * sum ||W||^2 (0.0 without L2)."""
        if not self.l2:
            return 0.0
        return self.l2 / (2 * m) * sum(self.backend.sq_norm(W) for W in params[0::2])
