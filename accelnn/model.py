"""The multi-layer perceptron: the classic math, written once against the backend interface.

For layers l = 1..L, rows are samples (X is (m, n0), W[l] is (n[l-1], n[l])):

    forward:   Z[l] = A[l-1] @ W[l] + b[l]        A[l] = g[l](Z[l])        A[0] = X
    backward:  dZ[L] = (A[L] - Y) / m             (matched output/loss pairs: accelnn.losses)
               dW[l] = A[l-1].T @ dZ[l]           db[l] = sum(dZ[l], axis=0)
               dZ[l-1] = (dZ[l] @ W[l].T) * g'[l-1](Z[l-1])
    update:    p <- optimizer(p, dp) for every W[l], b[l]

The column-major notation of the classic two-layer derivation (X (n0, m), W (n_out, n_in)) is
the same math transposed. Every g' is written from A[l] (accelnn.activations), so the forward
pass overwrites Z with A in place and backward needs only the stored A's.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from accelnn._data import check_X, host_array, resolve_dtype
from accelnn.activations import Activation, get_activation
from accelnn.backends import get_backend
from accelnn.losses import HEADS, Head, get_head
from accelnn.optimizers import Optimizer, check_lr, get_optimizer

IDENTITY = get_activation("identity")


class DivergenceError(FloatingPointError):
    """The training loss became NaN or Inf; the model keeps its last finite weights."""


class StepSpec(NamedTuple):
    """What a backend needs to decide whether it has a compiled whole-step path."""

    layer_sizes: tuple[int, ...]
    activations: tuple[Activation, ...]  # one per hidden layer
    head: Head
    l2: float
    optimizer: Optimizer
    dtype: np.dtype


class History:
    """Per-epoch logs of a fit: `history["loss"]`, `history["val_loss"]` (with validation)."""

    def __init__(self):
        self.history: dict[str, list[float]] = {"loss": []}
        self.epochs = 0

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        self.epochs += 1

    def __repr__(self) -> str:
        last = {k: v[-1] for k, v in self.history.items() if v}
        return f"History(epochs={self.epochs}, last={last})"


class _Workspace:
    """Buffers for one batch size m, reused across steps: A[l] (m, n[l]) for every layer (the
    last one holds Z[L], then dZ[L]) and D[l] (m, n[l]) for the hidden deltas."""

    def __init__(self, backend, sizes, m, dtype):
        self.A = [backend.empty((m, n), dtype) for n in sizes[1:]]
        self.D = [backend.empty((m, n), dtype) for n in sizes[1:-1]]
        self.batch: tuple[Any, Any] | None = None  # gathered (X, Y) mini-batch buffers


def _check_layer_sizes(layer_sizes) -> tuple[int, ...]:
    try:
        sizes = tuple(int(n) for n in layer_sizes)
        ok = len(sizes) >= 2 and all(n >= 1 and n == v for n, v in zip(sizes, layer_sizes))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError("layer_sizes must list at least two positive integers "
                         f"(inputs, ..., outputs), got {layer_sizes!r}")
    return sizes


class MLP:
    """A fully connected network, `layer_sizes = [n_inputs, hidden..., n_outputs]`.

    hidden_activation: one name for every hidden layer or a list with one per hidden layer
        (identity, sigmoid/logistic, tanh, relu, leaky_relu, softplus).
    output: "sigmoid" (binary cross-entropy), "softmax" (categorical cross-entropy),
        "identity" (squared error) or "auto", which picks from the targets of the first fit.
    l2: scikit-learn's `alpha`: loss += l2/(2m) sum ||W||^2, dW += l2/m W (weights only).
    seed: initial weights (Glorot/He uniform, biases zero) and mini-batch shuffling come from
        numpy.random.default_rng(seed) on the host, so every backend starts bit-identical.
    dtype: float32 or float64 (default: ACCELNN_DTYPE, else float32).
    backend: a name or Backend (default: accelnn's current selection, see accelnn.get_backend).

    Raises ValueError/TypeError for bad sizes, names, l2 or dtype, and BackendError for a
    backend that is unknown or cannot run here.
    """

    def __init__(self, layer_sizes: Sequence[int], hidden_activation="relu", output="auto", *,
                 l2: float = 0.0, seed: int | None = None, dtype=None, backend=None):
        sizes = _check_layer_sizes(layer_sizes)
        n_hidden = len(sizes) - 2
        if isinstance(hidden_activation, (list, tuple)):
            if len(hidden_activation) != n_hidden:
                raise ValueError(f"hidden_activation lists {len(hidden_activation)} names for "
                                 f"{n_hidden} hidden layers")
            acts = tuple(get_activation(a) for a in hidden_activation)
        else:
            acts = (get_activation(hidden_activation),) * n_hidden
        head = None if output == "auto" else get_head(output)
        if not (isinstance(l2, (int, float)) and math.isfinite(l2) and l2 >= 0):
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        self.dtype = resolve_dtype(dtype)
        self.backend = get_backend(backend)
        self.layer_sizes = sizes
        self.activations = acts
        self.head: Head | None = head
        self.l2 = float(l2)
        self.classes_: np.ndarray | None = None
        self._rng = np.random.default_rng(seed)
        self._params = [self.backend.asarray(p, self.dtype) for p in self._init_weights()]
        self._grads = [self.backend.zeros(p.shape, self.dtype) for p in self._params]
        self._workspaces: OrderedDict[int, _Workspace] = OrderedDict()
        self._optimizer: Optimizer | None = None
        self._opt_state: dict = {}

    # ------------------------------------------------------------------ parameters
    def _init_weights(self) -> list[np.ndarray]:
        params = []
        for l, (n_in, n_out) in enumerate(zip(self.layer_sizes, self.layer_sizes[1:])):
            act = self.activations[l] if l < len(self.activations) else IDENTITY
            bound = act.init_bound(n_in, n_out)
            params.append(self._rng.uniform(-bound, bound, size=(n_in, n_out)))
            params.append(np.zeros(n_out))
        return params

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    def get_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W, b), ...] as NumPy copies, W of shape (n_in, n_out)."""
        host = [np.array(self.backend.to_numpy(p), copy=True) for p in self._params]
        return list(zip(host[0::2], host[1::2]))

    def set_weights(self, weights) -> None:
        """Replace every (W, b) in place. Rejects (ValueError) a list of the wrong length, any
        shape that differs from the layer sizes, non-numeric values, NaN or Inf, leaving the
        model unchanged."""
        weights = list(weights)
        if len(weights) != self.n_layers:
            raise ValueError(f"set_weights needs {self.n_layers} (W, b) pairs, got "
                             f"{len(weights)}")
        flat = []
        for l, pair in enumerate(weights):
            if len(pair) != 2:
                raise ValueError(f"layer {l + 1}: expected a (W, b) pair")
            for arr, want, what in ((pair[0], self._params[2 * l].shape, "W"),
                                    (pair[1], self._params[2 * l + 1].shape, "b")):
                a = host_array(arr, f"layer {l + 1} {what}")
                if a.dtype.kind not in "biuf":
                    raise TypeError(f"layer {l + 1} {what}: dtype {a.dtype} is not numeric")
                if a.shape != want:
                    raise ValueError(f"layer {l + 1} {what}: expected shape {want}, got "
                                     f"{a.shape}")
                if not np.isfinite(a).all():
                    raise ValueError(f"layer {l + 1} {what} contains NaN or Inf")
                flat.append(a)
        for p, a in zip(self._params, flat):
            p[...] = self.backend.asarray(a, self.dtype)

    # ------------------------------------------------------------------ targets
    def _resolve_head(self, y: np.ndarray) -> Head:
        """The head "auto" picks: 1-D labels -> sigmoid (one output unit, at most two distinct
        labels) or softmax (several units); a 0/1 matrix -> softmax when every row is one-hot,
        else sigmoid (multi-label); any other numbers -> identity (regression)."""
        n_out = self.layer_sizes[-1]
        numeric = y.dtype.kind in "biuf"
        if y.ndim == 1:
            if n_out > 1 or not numeric or (_integral(y) and len(np.unique(y)) <= 2):
                return HEADS["sigmoid" if n_out == 1 else "softmax"]
            return HEADS["identity"]
        if numeric and np.isin(y, (0, 1)).all():
            one_hot = n_out > 1 and bool((y.sum(axis=1) == 1).all())
            return HEADS["softmax" if one_hot else "sigmoid"]
        return HEADS["identity"]

    def _encode_targets(self, y, m: int, head: Head | None, classes):
        """Validate y against m samples and return (head, classes, Y (m, n_out) float64)."""
        y = host_array(y, "y")
        n_out = self.layer_sizes[-1]
        if y.ndim == 2 and y.shape[1] == 1 and n_out == 1:
            y = y[:, 0]
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D (labels or values) or 2-D (one row per sample), "
                             f"got shape {y.shape}")
        if len(y) != m:
            raise ValueError(f"X and y have different lengths: {m} samples in X, {len(y)} "
                             f"in y")
        if y.dtype.kind == "c":
            raise TypeError("y must not be complex")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y contains NaN or Inf")
        head = head or self._resolve_head(y)
        if head.name != "identity" and y.ndim == 1:
            return (head, *self._encode_labels(y, head, classes))
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y must hold numbers for a {head.name} output, got dtype "
                            f"{y.dtype}")
        Y = y.reshape(m, -1).astype(np.float64)
        if Y.shape[1] != n_out:
            raise ValueError(f"y has {Y.shape[1]} columns, but the output layer has {n_out} "
                             f"units")
        if head.name == "sigmoid" and ((Y < 0) | (Y > 1)).any():
            raise ValueError("targets of a sigmoid output must lie in [0, 1]")
        if head.name == "softmax" and ((Y < 0).any() or not np.allclose(Y.sum(axis=1), 1.0)):
            raise ValueError("rows of y for a softmax output must be one-hot or probabilities "
                             "summing to 1")
        if head.name != "identity" and classes is None:
            classes = np.arange(max(n_out, 2))
        return head, classes, Y

    def _encode_labels(self, y: np.ndarray, head: Head, classes):
        n_classes = 2 if head.name == "sigmoid" else self.layer_sizes[-1]
        if classes is None:
            if y.dtype.kind in "biuf" and _integral(y) and y.min() >= 0 and y.max() < n_classes:
                classes = np.arange(n_classes)
            else:
                classes = np.unique(y)
                if len(classes) > n_classes:
                    raise ValueError(f"y has {len(classes)} classes, but a {head.name} output "
                                     f"with {self.layer_sizes[-1]} units holds {n_classes}")
        idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        unknown = classes[idx] != y
        if unknown.any():
            bad = np.unique(y[unknown])[:10]
            raise ValueError(f"y has labels outside the classes seen in fit "
                             f"{classes.tolist()}: {bad.tolist()}")
        if head.name == "sigmoid":
            return classes, idx.astype(np.float64).reshape(-1, 1)
        Y = np.zeros((len(y), self.layer_sizes[-1]))
        Y[np.arange(len(y)), idx] = 1.0
        return classes, Y

    def _prepare(self, X, y, head: Head | None = None, classes=None):
        """Checked device copies of X and encoded Y, plus the head and classes they imply
        (by default the model's own, resolved from y when still unset)."""
        Xd = check_X(self.backend, X, self.dtype, self.layer_sizes[0])
        head, classes, Y = self._encode_targets(y, Xd.shape[0], head or self.head,
                                                self.classes_ if classes is None else classes)
        return Xd, self.backend.asarray(Y, self.dtype), head, classes

    # ------------------------------------------------------------------ the math
    def _workspace(self, m: int) -> _Workspace:
        ws = self._workspaces.get(m)
        if ws is None:
            ws = self._workspaces[m] = _Workspace(self.backend, self.layer_sizes, m, self.dtype)
            if len(self._workspaces) > 4:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(m)
        return ws

    def _forward(self, X, ws: _Workspace):
        """Forward pass into the workspace; returns the buffer holding Z[L] (pre-activation)."""
        be, P = self.backend, self._params
        prev = X
        for l in range(self.n_layers):
            act = self.activations[l] if l < len(self.activations) else IDENTITY
            prev = be.dense_forward(prev, P[2 * l], P[2 * l + 1], act, ws.A[l])
        return prev

    def _loss_grads(self, X, Y):
        """Loss (0-d backend array) at the current weights; fills self._grads."""
        be, P, G = self.backend, self._params, self._grads
        m = X.shape[0]
        ws = self._workspace(m)
        Z = self._forward(X, ws)
        loss = be.loss_delta(Z, Y, self.head, Z)
        delta = Z
        for l in reversed(range(self.n_layers)):
            A_prev = ws.A[l - 1] if l else X
            dA_prev = ws.D[l - 1] if l else None
            act_prev = self.activations[l - 1] if l else None
            be.dense_backward(delta, A_prev, P[2 * l], G[2 * l], G[2 * l + 1], dA_prev,
                              act_prev)
            delta = dA_prev
        if self.l2:
            for l in range(self.n_layers):
                loss = loss + self.l2 / (2 * m) * be.sq_norm(P[2 * l])
                be.add_scaled(G[2 * l], P[2 * l], self.l2 / m)
        return loss

    # ------------------------------------------------------------------ public API
    def forward(self, X):
        """Output activations A[L] = h(Z[L]) for X, as an array of the model's backend.
        Rejects X that check_X rejects; needs a resolved output (fit first, or output=...)."""
        self._need_head()
        Xd = check_X(self.backend, X, self.dtype, self.layer_sizes[0])
        Z = self._forward(Xd, self._workspace(Xd.shape[0]))
        return self.backend.output(self.backend.copy(Z), self.head)

    def predict_proba(self, X):
        """Class probabilities, (m, n_classes), as an array of the model's backend. A sigmoid
        output with one unit gives two columns, P(class 0) and P(class 1)."""
        self._need_classifier()
        P = self.forward(X)
        if P.shape[1] == 1:
            P = self.backend.xp.concatenate([1.0 - P, P], axis=1)
        return P

    def predict(self, X):
        """Class labels (classifiers), 0/1 per output (multi-label sigmoid) or outputs
        (identity head). Numeric labels come back as an array of the model's backend, other
        labels (text) as a NumPy array."""
        self._need_head()
        out = self.forward(X)
        if self.head.name == "identity":
            return out
        if self.head.name == "sigmoid":
            hit = (out > 0.5).astype(np.intp)
            if out.shape[1] > 1:
                return hit
            idx = hit[:, 0]
        else:
            idx = self.backend.xp.argmax(out, axis=1)
        if self.classes_.dtype.kind in "biuf":
            return self.backend.asarray(self.classes_)[idx]
        return self.classes_[self.backend.to_numpy(idx)]

    def loss_and_grads(self, X, Y):
        """(loss, [(dW, db), ...]) at the current weights, as a float and NumPy arrays. Y is
        encoded as in fit (labels, one-hot or values). Changes no weights."""
        Xd, Yd, head, classes = self._prepare(X, Y)
        self._adopt(head, classes)
        loss = float(self._loss_grads(Xd, Yd))
        host = [np.array(self.backend.to_numpy(g), copy=True) for g in self._grads]
        return loss, list(zip(host[0::2], host[1::2]))

    def loss(self, X, Y) -> float:
        """The training loss (with the L2 term) at the current weights, as a float."""
        Xd, Yd, head, classes = self._prepare(X, Y)
        self._adopt(head, classes)
        return float(self._loss_grads(Xd, Yd))

    def fit(self, X, y, *, epochs: int = 1, batch_size: int | None = None,
            optimizer="sgd", lr: float | None = None, shuffle: bool = True,
            validation_data=None) -> History:
        """Train with gradient descent and return the per-epoch History.

        batch_size None is full-batch gradient descent (the classic algorithm); otherwise
        mini-batches from a permutation drawn each epoch from the model's seeded RNG (when
        `shuffle`). optimizer: "sgd", "momentum", "nesterov", "adam", "adamw" or an Optimizer;
        `lr` overrides its learning rate. A second fit with the same Optimizer object continues
        its state. `validation_data=(X_val, y_val)` adds "val_loss" to the history.

        Rejects, before anything changes: bad X or y (see the README's input rules), labels
        outside the classes of an earlier fit, epochs < 1, batch_size < 1, lr <= 0, unknown
        optimizer names. If the loss becomes NaN or Inf, raises DivergenceError and keeps the
        weights of the start of that epoch (the last ones whose loss was finite).
        """
        if not (isinstance(epochs, (int, np.integer)) and epochs >= 1):
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        if batch_size is not None and not (
                isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
            raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
        opt, lr = self._choose_optimizer(optimizer, lr)
        Xd, Yd, head, classes = self._prepare(X, y)
        val = None
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            val = self._prepare(*validation_data, head=head, classes=classes)[:2]
        self._adopt(head, classes, opt)
        step = self._step_function(lr)
        return self._run_epochs(Xd, Yd, epochs, batch_size, shuffle, val, step)

    def step_function(self, X, y, *, optimizer="sgd", lr: float | None = None):
        """Check (X, y) once and return `step() -> loss`: one optimizer step on all of (X, y)
        with no further checks, the loss (before the update) left as a 0-d backend array.
        This is the unit the benchmarks time; it accepts and rejects what fit does."""
        opt, lr = self._choose_optimizer(optimizer, lr)
        Xd, Yd, head, classes = self._prepare(X, y)
        self._adopt(head, classes, opt)
        step = self._step_function(lr)
        return lambda: step(Xd, Yd)

    def _choose_optimizer(self, optimizer, lr) -> tuple[Optimizer, float]:
        opt = optimizer if optimizer is self._optimizer else get_optimizer(optimizer, lr)
        return opt, opt.lr if lr is None else check_lr(lr)

    def _adopt(self, head: Head, classes, opt: Optimizer | None = None) -> None:
        self.head, self.classes_ = head, classes
        if opt is not None and opt is not self._optimizer:
            self._optimizer, self._opt_state = opt, opt.init_state(self.backend, self._params)

    def _run_epochs(self, Xd, Yd, epochs, batch_size, shuffle, val, step) -> History:
        be, m = self.backend, Xd.shape[0]
        bs = m if batch_size is None else min(int(batch_size), m)
        history = History()
        # Weights at the start of the current epoch, and of the last epoch whose loss was
        # finite: where a diverging fit rolls back to.
        start = [be.copy(p) for p in self._params]
        good = None
        for epoch in range(1, epochs + 1):
            if epoch > 1:
                for keep, p in zip(start, self._params):
                    keep[...] = p
            with np.errstate(over="ignore", invalid="ignore"):
                total = self._run_epoch(Xd, Yd, bs, shuffle, step)
            logs = {"loss": float(total)}
            if not math.isfinite(logs["loss"]):
                back = good if good is not None else start
                for p, keep in zip(self._params, back):
                    p[...] = keep
                kept = (f"the start of epoch {epoch - 1}, the last whose loss was finite"
                        if good is not None else "the start of this fit")
                raise DivergenceError(
                    f"training diverged: the loss became {logs['loss']} in epoch {epoch}; the "
                    f"model keeps its weights from {kept}. Try a smaller lr.")
            good, start = start, (good or [be.copy(p) for p in self._params])
            if val is not None:
                logs["val_loss"] = float(self._loss_grads(*val))
            history.append(logs)
        return history

    def _run_epoch(self, Xd, Yd, bs: int, shuffle: bool, step):
        """One pass over the data; returns the sample-weighted mean of the step losses."""
        m = Xd.shape[0]
        if bs == m:
            return step(Xd, Yd)
        total = 0.0
        order = self.backend.asarray(self._rng.permutation(m) if shuffle else np.arange(m))
        for lo in range(0, m, bs):
            Xb, Yb = self._gather(Xd, Yd, order[lo:lo + bs])
            total = total + step(Xb, Yb) * (Xb.shape[0] / m)
        return total

    def _gather(self, Xd, Yd, idx):
        ws = self._workspace(idx.shape[0])
        if ws.batch is None:
            n = idx.shape[0]
            ws.batch = (self.backend.empty((n, Xd.shape[1]), self.dtype),
                        self.backend.empty((n, Yd.shape[1]), self.dtype))
        Xb, Yb = ws.batch
        return self.backend.take_rows(Xd, idx, Xb), self.backend.take_rows(Yd, idx, Yb)

    def _step_function(self, lr: float):
        """One training step, step(X, Y) -> loss: the backend's compiled path when it has one
        for this network, else the shared path below."""
        be, opt = self.backend, self._optimizer
        spec = StepSpec(self.layer_sizes, self.activations, self.head, self.l2, opt,
                        self.dtype)
        fused = be.fused_train_step(spec)
        if fused is not None:
            return lambda X, Y: fused(self._params, self._grads, self._opt_state, X, Y, lr)

        def step(X, Y):
            loss = self._loss_grads(X, Y)
            opt.update(be, self._params, self._grads, self._opt_state, lr)
            return loss

        return step

    def save(self, path) -> None:
        """Write weights, configuration, classes and RNG state to one .npz file (atomically;
        loads without pickle). See accelnn.io."""
        from accelnn.io import save

        save(self, path)

    @classmethod
    def load(cls, path, *, backend=None) -> MLP:
        """Read a model written by `save`; ValueError names what is wrong with a bad file."""
        from accelnn.io import load

        return load(path, backend=backend)

    def _need_head(self) -> None:
        if self.head is None:
            raise RuntimeError("the output is 'auto' and not yet resolved: call fit first, "
                               "or create the MLP with output='sigmoid'|'softmax'|'identity'")

    def _need_classifier(self) -> None:
        self._need_head()
        if self.head.name == "identity":
            raise RuntimeError("predict_proba needs a classifier (sigmoid or softmax output)")

    def __repr__(self) -> str:
        acts = ",".join(a.name for a in self.activations)
        head = self.head.name if self.head else "auto"
        return (f"MLP({list(self.layer_sizes)}, hidden={acts}, output={head}, "
                f"dtype={self.dtype.name}, backend={self.backend.name})")


def _integral(y: np.ndarray) -> bool:
    return y.dtype.kind in "biu" or (y.dtype.kind == "f" and bool(np.all(np.mod(y, 1) == 0)))
