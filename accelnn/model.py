"""`MLP`, the public face of accelnn: a network (accelnn.network: the math), its training state
(accelnn.state: weights, optimizer, RNG, counts) and its output head and classes
(accelnn.targets: target encoding), with training in accelnn.training and files in accelnn.io.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from accelnn import io, training
from accelnn._data import check_X, host_array, resolve_dtype
from accelnn.backends import get_backend
from accelnn.callbacks import History
from accelnn.losses import Head, get_head
from accelnn.network import Network, Scratch, check_layer_sizes, hidden_activations
from accelnn.optimizers import check_lr, check_range, get_optimizer
from accelnn.state import TrainingState
from accelnn.targets import check_classes, encode_targets


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

    Threads: `forward`, `predict`, `predict_proba`, `loss`, `loss_and_grads` and
    `get_weights` may be called on one model from any number of threads at once, also while
    another thread runs `fit`: each call works in buffers of its own (the model keeps at most
    one set of hidden-layer buffers of up to 1 MiB between calls) and reads the weights after
    some whole training step, never a mix, and a prediction never changes what a concurrent fit
    computes. Training (`fit`, `step_function`'s steps), `set_weights` and `save` are for one
    thread at a time: a second concurrent `fit` raises RuntimeError.

    Raises ValueError/TypeError for bad sizes, names, l2, dtype or classes (not 1-D, repeated,
    or more than the output units hold), and BackendError for a backend that is unknown or
    cannot run here.
    """

    def __init__(self, layer_sizes: Sequence[int], hidden_activation="relu", output="auto", *,
                 l2: float = 0.0, seed: int | None = None, dtype=None, backend=None,
                 classes=None):
        sizes = check_layer_sizes(layer_sizes)
        acts = hidden_activations(hidden_activation, len(sizes) - 2)
        head = None if output == "auto" else get_head(output)
        l2 = check_range("l2", l2, 0.0)
        self.dtype = resolve_dtype(dtype)
        self.backend = get_backend(backend)
        self.layer_sizes = sizes
        self.activations = acts
        self.head: Head | None = head
        self.l2 = float(l2)
        self.classes_ = None if classes is None else check_classes(classes, sizes[-1])
        self.network = Network(sizes, acts, self.l2, self.backend, self.dtype)
        rng = np.random.default_rng(seed)
        params = [self.backend.asarray(p, self.dtype) for p in self.network.init_params(rng)]
        # the training state; validation_split's permutation has a seed of its own
        self.state = TrainingState(self.backend, params, rng, int(rng.integers(2**63)))
        self._scratch = Scratch()  # hidden-layer buffers lent to one inference call at a time
        self.stop_training = False  # a callback may set it to end fit after this epoch

    # ------------------------------------------------------------------ parameters
    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @property
    def epoch_(self) -> int:
        """Epochs run with the current optimizer state."""
        return self.state.epoch

    @property
    def _optimizer(self):
        return self.state.optimizer

    @property
    def _rng(self) -> np.random.Generator:
        return self.state.rng

    def get_config(self) -> dict:
        """The constructor's arguments as plain values (Keras' name): layer_sizes,
        hidden_activation (a name per hidden layer), output ("auto" until resolved), l2, dtype."""
        return {"layer_sizes": list(self.layer_sizes),
                "hidden_activation": [a.name for a in self.activations],
                "output": self.head.name if self.head else "auto", "l2": self.l2,
                "dtype": self.dtype.name}

    def get_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W, b), ...] as NumPy copies, W of shape (n_in, n_out)."""
        with self.state.guard.reading():
            host = [np.array(self.backend.to_numpy(p), copy=True) for p in self.state.params]
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
            for arr, want, what in ((pair[0], self.state.params[2 * l].shape, "W"),
                                    (pair[1], self.state.params[2 * l + 1].shape, "b")):
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
        self.state.set_params(flat)

    # ------------------------------------------------------------------ inputs
    def encode(self, X, y, head: Head | None = None, classes=None, part=None):
        """Checked device copies of X and the encoded targets y, as fit and the queries use
        them: (X (m, n0), Y (m, nL), head, classes) on the model's backend in its dtype. The
        head and classes are the model's own unless given, resolved from y while unset
        (accelnn.targets); nothing in the model changes.

        part=(lo, m): X holds rows lo, lo+1, ... of a data set of m rows split across
        processes, and y the targets of all m rows, so that the output and the classes
        resolve from every label, the same in every process; Y keeps X's rows only."""
        Xd = check_X(self.backend, X, self.dtype, self.layer_sizes[0])
        lo, m = part or (0, Xd.shape[0])
        head, classes, Y = encode_targets(y, m, self.layer_sizes[-1], head or self.head,
                                          self.classes_ if classes is None else classes)
        return Xd, self.backend.asarray(Y[lo:lo + Xd.shape[0]], self.dtype), head, classes

    # ------------------------------------------------------------------ inference
    def _logits(self, X):
        """Z[L] for X, in a new backend array, from the weights of one whole step. X's check
        for NaN and Inf is the backend's (`checked_logits`, fused into the forward pass where
        it can); when it finds one, check_X names where."""
        Xd = check_X(self.backend, X, self.dtype, self.layer_sizes[0], finite=False)
        with self.state.guard.reading():
            Z = self.backend.checked_logits(self.network, self.state.params, Xd,
                                            self._scratch)
        if Z is None:
            check_X(self.backend, X, self.dtype, self.layer_sizes[0])  # raises, naming where
            with self.state.guard.reading():  # finite X whose first layer overflowed
                Z = self.network.logits(self.state.params, Xd, self._scratch)
        return Z

    def forward(self, X):
        """Output activations A[L] = h(Z[L]) for X (m, n0): a new (m, nL) array of the model's
        backend. Rejects X that check_X rejects; needs a resolved output (fit first, or
        output=...)."""
        head = self._need_head()
        return self.backend.output(self._logits(X), head)

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
        labels (text) as a NumPy array. Before any fit, a classifier's labels are 0..n-1.

        Decisions come from the logits: softmax keeps their order, and sigmoid(z) > 0.5
        exactly when z > 0 (without the rounding of probabilities next to 0.5)."""
        head = self._need_head()
        Z = self._logits(X)
        if head.name == "identity":
            return Z
        if head.name == "sigmoid":
            hit = (Z > 0).astype(np.intp)
            if Z.shape[1] > 1:
                return hit
            idx = hit[:, 0]
        else:
            idx = self.backend.xp.argmax(Z, axis=1)
        classes = self.classes_
        if classes is None:
            classes = np.arange(max(self.layer_sizes[-1], 2))
        if classes.dtype.kind in "biuf":
            return self.backend.asarray(classes)[idx]
        return classes[self.backend.to_numpy(idx)]

    def loss_and_grads(self, X, Y):
        """(loss, [(dW, db), ...]) at the current weights, as a float and NumPy arrays. Y is
        encoded as in fit (labels, one-hot or values). Changes no weights, head or classes;
        rejects what fit rejects."""
        Xd, Yd, head, _ = self.encode(X, Y)
        be, net = self.backend, self.network
        grads = [be.empty(p.shape, self.dtype) for p in self.state.params]
        with self.state.guard.reading():
            loss = float(net.loss_grads(self.state.params, grads, head, Xd, Yd,
                                        net.workspace(Xd.shape[0])))
        host = [be.to_numpy(g) for g in grads]
        return loss, list(zip(host[0::2], host[1::2]))

    def loss(self, X, Y) -> float:
        """The training loss (with the L2 term) at the current weights, as a float. Changes
        nothing in the model; rejects what fit rejects."""
        Xd, Yd, head, _ = self.encode(X, Y)
        net = self.network
        with self.state.guard.reading():
            return float(net.loss(self.state.params, head, Xd, Yd,
                                  net.workspace(Xd.shape[0], backward=False)))

    # ------------------------------------------------------------------ training
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
        Xd, Yd, head, classes = self.encode(X, y)
        self.head, self.classes_ = head, classes
        self.state.set_optimizer(opt)
        step = training.step_function(self.network, self.state, head)
        return lambda: step(Xd, Yd, lr)

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write weights, configuration, classes, RNG state, epoch and sample counts and
        optimizer state to one .npz file, atomically; it loads without pickle. See accelnn.io."""
        io.save(path, io.ModelFile(self.get_config(), self.classes_, self.state.saved()))

    @classmethod
    def load(cls, path, *, backend=None) -> MLP:
        """Read a model written by `save` (or a checkpoint of fit), on `backend` (default: the
        current selection), with its optimizer state, so that `fit(..., optimizer=None)`
        continues it. ValueError names the file and what is wrong with it (accelnn.io.read)."""
        record = io.read(path)
        c = record.config
        model = cls(c["layer_sizes"], c["hidden_activation"], c["output"], l2=c["l2"],
                    dtype=c["dtype"], backend=backend, classes=record.classes)
        model.state.adopt(record.state)
        return model

    def _need_head(self) -> Head:
        head = self.head
        if head is None:
            raise RuntimeError("the output is 'auto' and not yet resolved: call fit first, "
                               "or create the MLP with output='sigmoid'|'softmax'|'identity'")
        return head

    def _need_classifier(self) -> None:
        if self._need_head().name == "identity":
            raise RuntimeError("predict_proba needs a classifier (sigmoid or softmax output)")

    def __repr__(self) -> str:
        acts = ",".join(a.name for a in self.activations)
        head = self.head.name if self.head else "auto"
        return (f"MLP({list(self.layer_sizes)}, hidden={acts}, output={head}, "
                f"dtype={self.dtype.name}, backend={self.backend.name})")
