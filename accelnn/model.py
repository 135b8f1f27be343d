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

import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from accelnn._data import check_X, host_array, resolve_dtype
from accelnn.activations import Activation, get_activation
from accelnn.backends import get_backend
from accelnn.losses import HEADS, Head, get_head
from accelnn.optimizers import Optimizer, check_lr, check_range, get_optimizer
from accelnn.training import History

IDENTITY = get_activation("identity")


class StepSpec(NamedTuple):
    """What a backend needs to decide whether it has a compiled whole-step path."""

    layer_sizes: tuple[int, ...]
    activations: tuple[Activation, ...]  # one per hidden layer
    head: Head
    l2: float
    optimizer: Optimizer
    dtype: np.dtype


class _Workspace:
    """Buffers for one batch size m, reused across steps: A[l] (m, n[l]) for every layer (the
    last one holds Z[L], then dZ[L]) and D[l] (m, n[l]) for the hidden deltas."""

    def __init__(self, backend, sizes, m, dtype):
        self.A = [backend.empty((m, n), dtype) for n in sizes[1:]]
        self.D = [backend.empty((m, n), dtype) for n in sizes[1:-1]]
        self.batch: tuple[Any, Any] | None = None  # gathered (X, Y) mini-batch buffers


def check_classes(classes, n_out: int) -> np.ndarray:
    """`classes` as a sorted 1-D array of distinct labels, at most as many as `n_out` output
    units hold (two for a single unit); ValueError otherwise."""
    arr = np.asarray(classes)
    most = max(n_out, 2)
    if arr.ndim != 1 or not 1 <= len(arr) <= most or len(np.unique(arr)) != len(arr):
        raise ValueError(f"classes must be at most {most} distinct labels for {n_out} output "
                         f"units, got {arr.tolist()!r}")
    return np.sort(arr)


def _check_layer_sizes(layer_sizes) -> tuple[int, ...]:
    try:
        sizes = tuple(int(n) for n in layer_sizes)
        ok = len(sizes) >= 2 and all(n >= 1 and n == v and not isinstance(v, bool)
                                     for n, v in zip(sizes, layer_sizes))
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
    classes: the class labels, fixed before any are seen (sorted; class i is output unit i, or
        for one sigmoid unit, the 0/1 target). By default the first fit's labels decide.

    Raises ValueError/TypeError for bad sizes, names, l2, dtype or classes (not 1-D, repeated,
    or more than the output units hold), and BackendError for a backend that is unknown or
    cannot run here.
    """

    def __init__(self, layer_sizes: Sequence[int], hidden_activation="relu", output="auto", *,
                 l2: float = 0.0, seed: int | None = None, dtype=None, backend=None,
                 classes=None):
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
        l2 = check_range("l2", l2, 0.0)
        self.dtype = resolve_dtype(dtype)
        self.backend = get_backend(backend)
        self.layer_sizes = sizes
        self.activations = acts
        self.head: Head | None = head
        self.l2 = float(l2)
        self.classes_ = None if classes is None else check_classes(classes, sizes[-1])
        self._rng = np.random.default_rng(seed)
        self._params = [self.backend.asarray(p, self.dtype) for p in self._init_weights()]
        self._grads = [self.backend.zeros(p.shape, self.dtype) for p in self._params]
        self._split_seed = int(self._rng.integers(2**63))  # validation_split's permutation
        self._workspaces: OrderedDict[int, _Workspace] = OrderedDict()
        self._optimizer: Optimizer | None = None
        self._opt_state: dict = {}
        self.epoch_ = 0  # epochs run with the current optimizer state
        self.stop_training = False  # a callback may set it to end fit after this epoch

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
        shape that differs from the layer sizes, non-numeric values, NaN, Inf or values too
        large for the model dtype, leaving the model unchanged."""
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
                with np.errstate(over="ignore"):
                    cast = a.astype(self.dtype)
                if not np.isfinite(cast).all():
                    raise ValueError(f"layer {l + 1} {what} has values too large for "
                                     f"{self.dtype.name}")
                flat.append(cast)
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
        if head.name == "sigmoid" and n_out > 1 and y.ndim == 1:
            raise ValueError(f"a sigmoid output with {n_out} units (multi-label) needs y of "
                             f"shape (samples, {n_out}): one 0/1 column per unit")
        soft = head.name == "sigmoid" and y.dtype.kind == "f" and not _integral(y)
        if head.name != "identity" and y.ndim == 1 and not soft:
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

    def _prepare(self, X, y, head: Head | None = None, classes=None, part=None):
        """Checked device copies of X and encoded Y, plus the head and classes they imply
        (by default the model's own, resolved from y when still unset).

        part=(lo, m): X holds rows lo, lo+1, ... of a data set of m rows split across
        processes, and y the targets of all m rows, so that the output and the classes
        resolve from every label, the same in every process; Y keeps X's rows only."""
        Xd = check_X(self.backend, X, self.dtype, self.layer_sizes[0])
        lo, m = part or (0, Xd.shape[0])
        head, classes, Y = self._encode_targets(y, m, head or self.head,
                                                self.classes_ if classes is None else classes)
        return Xd, self.backend.asarray(Y[lo:lo + Xd.shape[0]], self.dtype), head, classes

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
        return self._add_l2(self._data_loss_grads(X, Y), X.shape[0])

    def _data_loss_grads(self, X, Y):
        """The data part of `_loss_grads`: the mean loss over the rows of X and its gradients
        (into self._grads), without the L2 term, which `_add_l2` adds for a batch of m rows."""
        be, P, G = self.backend, self._params, self._grads
        ws = self._workspace(X.shape[0])
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
        return loss

    def _add_l2(self, loss, m: int):
        """loss + l2/(2m) sum ||W||^2, and dW += l2/m W in self._grads (nothing without L2)."""
        if not self.l2:
            return loss
        for l in range(self.n_layers):
            self.backend.add_scaled(self._grads[2 * l], self._params[2 * l], self.l2 / m)
        return loss + self._l2_loss(m)

    def _l2_loss(self, m: int):
        """l2 / (2m) * sum ||W||^2 (0.0 without L2)."""
        if not self.l2:
            return 0.0
        return self.l2 / (2 * m) * sum(self.backend.sq_norm(W) for W in self._params[0::2])

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

    @contextlib.contextmanager
    def _evaluating(self, X, Y):
        """Checked (X, Y) on the device, with the output head that Y implies in place while
        the block runs: a query on a model whose output is still "auto" resolves it for
        itself, and the model keeps its own head and classes (only fit adopts them)."""
        Xd, Yd, head, _ = self._prepare(X, Y)
        saved, self.head = self.head, head
        try:
            yield Xd, Yd
        finally:
            self.head = saved

    def loss_and_grads(self, X, Y):
        """(loss, [(dW, db), ...]) at the current weights, as a float and NumPy arrays. Y is
        encoded as in fit (labels, one-hot or values). Changes no weights, head or classes;
        rejects what fit rejects."""
        with self._evaluating(X, Y) as (Xd, Yd):
            loss = float(self._loss_grads(Xd, Yd))
        host = [np.array(self.backend.to_numpy(g), copy=True) for g in self._grads]
        return loss, list(zip(host[0::2], host[1::2]))

    def loss(self, X, Y) -> float:
        """The training loss (with the L2 term) at the current weights, as a float. Changes
        nothing in the model; rejects what fit rejects."""
        with self._evaluating(X, Y) as (Xd, Yd):
            return float(self._loss_grads(Xd, Yd))

    def fit(self, X, y, *, epochs: int = 1, batch_size: int | None = None, optimizer=None,
            lr: float | None = None, lr_schedule="constant", shuffle: bool = True,
            validation_data=None, validation_split: float = 0.0, early_stopping=False,
            metrics=(), callbacks=(), verbose: int = 0, checkpoint=None,
            resume_from=None) -> History:
        """Train with gradient descent and return the per-epoch History.

        epochs: how many epochs to run (with resume_from: up to this epoch in total).
        batch_size: None is full-batch gradient descent (the classic algorithm); otherwise
            mini-batches of a permutation drawn each epoch from the model's seeded RNG (when
            `shuffle`). A memory-mapped X (np.load(..., mmap_mode="r")) with a batch_size is
            streamed a batch at a time, never loaded whole.
        optimizer: "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop" or an Optimizer
            (accelnn.SGD, Adam, AdamW, RMSprop). None continues the model's current optimizer
            and its state (a loaded checkpoint's, or the last fit's), else plain SGD. A new
            optimizer starts fresh state and restarts the epoch count `epoch_`.
        lr: the initial learning rate (default: the optimizer's); lr_schedule: "constant",
            "step", "exponential", "cosine", "invscaling", "adaptive" or a Schedule
            (accelnn.schedules), evaluated once per epoch.
        validation_data=(X_val, y_val) or validation_split (a seeded fraction held out) add
            "val_loss" to the history; metrics=("accuracy",) adds accuracy and val_accuracy.
        early_stopping: True (val_loss, patience 10, restore best weights) or an
            accelnn.EarlyStopping. callbacks: callables cb(epoch, logs, model) or objects with
            on_epoch_end(epoch, logs, model); setting model.stop_training ends the fit.
        verbose: 1 shows a progress bar on a terminal (tqdm when installed), 2 prints a line
            per epoch, 0 is silent. checkpoint: a path saved (atomically) after every epoch.
        resume_from: a checkpoint of this architecture; restores weights, optimizer state,
            RNG, epoch count and schedule state, then trains on to `epochs`, so that 5 epochs
            + checkpoint + resume to 10 equals 10 epochs in one go.

        Rejects, before anything changes: bad X or y (see the README's input rules), labels
        outside the classes of an earlier fit, epochs < 1, batch_size < 1, lr <= 0, unknown
        optimizer, schedule or metric names, a validation_split outside [0, 1), both kinds of
        validation, early stopping on validation without validation data, accuracy for a
        regressor, a checkpoint of another architecture or already at `epochs`. If the loss
        becomes NaN or Inf, raises DivergenceError and keeps the weights of the last epoch
        whose loss was finite.
        """
        from accelnn import training

        return training.fit(
            self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
            lr_schedule=lr_schedule, shuffle=shuffle, validation_data=validation_data,
            validation_split=validation_split, early_stopping=early_stopping,
            metrics=metrics, callbacks=callbacks, verbose=verbose, checkpoint=checkpoint,
            resume_from=resume_from)

    def step_function(self, X, y, *, optimizer="sgd", lr: float | None = None):
        """Check (X, y) once and return `step() -> loss`: one optimizer step on all of (X, y)
        with no further checks, the loss (before the update) left as a 0-d backend array.
        This is the unit the benchmarks time; it accepts and rejects what fit does.
        On the cupy backend, from the third call on, the step replays a CUDA graph and returns
        the same loss array every time, overwritten by the next step: read it or copy it first."""
        opt = get_optimizer(optimizer, lr)
        lr = opt.lr if lr is None else check_lr(lr)
        Xd, Yd, head, classes = self._prepare(X, y)
        self._adopt(head, classes, opt)
        step = self._step_function()
        return lambda: step(Xd, Yd, lr)

    def _adopt(self, head: Head, classes, opt: Optimizer | None = None) -> None:
        self.head, self.classes_ = head, classes
        if opt is not None and opt is not self._optimizer:
            self._optimizer, self._opt_state = opt, opt.init_state(self.backend, self._params)
            self.epoch_ = 0

    def _batch_buffers(self, n: int, x_cols: int, y_cols: int):
        """Reused (X, Y) buffers for a gathered mini-batch of n rows."""
        ws = self._workspace(n)
        if ws.batch is None or ws.batch[0].shape[1] != x_cols or ws.batch[1].shape[1] != y_cols:
            ws.batch = (self.backend.empty((n, x_cols), self.dtype),
                        self.backend.empty((n, y_cols), self.dtype))
        return ws.batch

    def _step_function(self, reducer=None):
        """One training step, step(X, Y, lr) -> loss: the backend's compiled path when it
        has one for this network, else the shared path below.

        reducer: for data-parallel training (accelnn.distributed), a callable
        `reducer(loss, grads, m) -> (loss, m_batch)` called between the gradients and the
        update. X is then this process's part of a batch (possibly no rows: loss and grads
        are then meaningless and the reducer must count them as zero); `loss` and `grads`
        are the mean data loss and its gradients over those m rows, and the reducer replaces
        the grads in place by the means over the whole batch, returning that batch's mean
        loss and row count. L2 is added once afterwards, for the whole batch. With a
        reducer, the backend's compiled path is never used."""
        be, opt = self.backend, self._optimizer
        if reducer is None:
            spec = StepSpec(self.layer_sizes, self.activations, self.head, self.l2, opt,
                            self.dtype)
            fused = be.fused_train_step(spec)
            if fused is not None:
                return lambda X, Y, lr: fused(self._params, self._grads, self._opt_state, X,
                                              Y, lr)

        loss_grads = be.replayed(self._loss_grads) if reducer is None else None

        def step(X, Y, lr):
            if reducer is None:
                loss = loss_grads(X, Y)
            else:
                m = X.shape[0]
                loss, m = reducer(self._data_loss_grads(X, Y) if m else 0.0, self._grads, m)
                loss = self._add_l2(loss, m)
            opt.update(be, self._params, self._grads, self._opt_state, lr)
            return loss

        return step

    def save(self, path) -> None:
        """Write weights, configuration, classes, RNG state, epoch count and optimizer state
        to one .npz file, atomically; it loads without pickle. See accelnn.io."""
        from accelnn.io import save

        save(self, path)

    @classmethod
    def load(cls, path, *, backend=None) -> MLP:
        """Read a model written by `save`; ValueError names what is wrong with a bad file."""
        from accelnn.io import load

        return load(path, backend=backend)

    def _read_checkpoint(self, path) -> dict:
        from accelnn.io import read_checkpoint

        return read_checkpoint(self, path)

    def _write_checkpoint(self, path, run: dict) -> None:
        from accelnn.io import save

        save(self, path, run)

    def _adopt_checkpoint(self, ckpt: dict) -> None:
        """Take weights, classes, RNG, optimizer state and epoch from a loaded checkpoint."""
        src = ckpt["model"]
        for p, q in zip(self._params, src._params):
            p[...] = q
        self.head = self.head or src.head
        self.classes_ = src.classes_
        self._rng.bit_generator.state = src._rng.bit_generator.state
        self._split_seed = src._split_seed
        self._optimizer, self._opt_state, self.epoch_ = src._optimizer, src._opt_state, src.epoch_

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
