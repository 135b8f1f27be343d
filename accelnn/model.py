"""`MLP`, the public face of accelnn: a network (accelnn.network: the math), its training state
(accelnn.state: weights, optimizer, RNG, counts) and its output head and classes
(accelnn.targets: target encoding), with training in accelnn.training and files in accelnn.io.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from accelnn import export, io, steps, training
from accelnn._data import check_X, host_array, resolve_dtype
from accelnn.backends import get_backend
from accelnn.batches import Data
from accelnn.callbacks import History
from accelnn.features import check_feature_names
from accelnn.losses import Head, get_head
from accelnn.metrics import check_head, check_metrics, evaluate
from accelnn.network import Network, Scratch, check_layer_sizes, hidden_activations
from accelnn.optimizers import check_lr, check_range, get_optimizer
from accelnn.state import TrainingState
from accelnn.targets import check_classes, encode_targets
from accelnn.weighting import check_sample_weight, unless_uniform


def _seeded_rng(seed) -> np.random.Generator:
    """numpy.random.default_rng(seed), with errors that name `seed` (booleans refused)."""
    accepted = ("None, an integer >= 0, a sequence of them, a numpy SeedSequence, "
                "BitGenerator or Generator")
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be {accepted}, got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"seed must be {accepted}, got {seed!r}") from exc


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

    Feature names: fitted on a table with string column names (a pandas DataFrame), the
    model keeps them as `feature_names_in_` (saved with it), and every later call refuses a
    table whose names differ (ValueError); NumPy arrays are taken as they are.

    Threads: `forward`, `predict`, `predict_proba`, `loss`, `loss_and_grads` and
    `get_weights` may be called on one model from any number of threads at once, also while
    another thread runs `fit`: each call works in buffers of its own (the model keeps at most
    one set of hidden-layer buffers of up to 1 MiB between calls) and reads the weights after
    some whole training step, never a mix, and a prediction never changes what a concurrent fit
    computes. Training (`fit`, `step_function`'s steps), `set_weights` and `save` are for one
    thread at a time: a second concurrent `fit` raises RuntimeError.

    Raises ValueError/TypeError for bad sizes, names, l2, dtype, seed (what
    numpy.random.default_rng takes, booleans refused) or classes (not 1-D, repeated, more
    than the output units hold, or not labels of one kind: see accelnn.targets), and
    BackendError for a backend that is unknown or cannot run here.
    """

    def __init__(self, layer_sizes: Sequence[int], hidden_activation="relu", output="auto", *,
                 l2: float = 0.0, seed: int | None = None, dtype=None, backend=None,
                 classes=None):
        sizes = check_layer_sizes(layer_sizes)
        acts = hidden_activations(hidden_activation, len(sizes) - 2)
        head = None if output == "auto" else get_head(output)
        l2 = check_range("l2", l2, 0.0)
        rng = _seeded_rng(seed)
        self.dtype = resolve_dtype(dtype)
        self.backend = get_backend(backend)
        self.layer_sizes = sizes
        self.activations = acts
        self.head: Head | None = head
        self.l2 = float(l2)
        self.classes_ = None if classes is None else check_classes(
            classes, sizes[-1], None if head is None else head.name)
        self.network = Network(sizes, acts, self.l2, self.backend, self.dtype)
        try:
            params = [self.backend.asarray(p, self.dtype) for p in self.network.init_params(rng)]
        except MemoryError as exc:
            n = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
            raise ValueError(f"layer_sizes {list(sizes)} make {n:,} parameters "
                             f"({n * 8 / 2**30:,.1f} GiB as float64 while they are drawn): more "
                             f"than this machine can allocate") from exc
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
        try:
            weights = list(weights)
        except TypeError:
            raise TypeError(f"weights must be a list of (W, b) pairs, got "
                            f"{type(weights).__name__}") from None
        if len(weights) != self.n_layers:
            raise ValueError(f"set_weights needs {self.n_layers} (W, b) pairs, got "
                             f"{len(weights)}")
        flat = []
        for l, pair in enumerate(weights):
            try:
                is_pair = len(pair) == 2
            except TypeError:
                is_pair = False
            if not is_pair:
                raise ValueError(f"weights[{l}] (layer {l + 1}): expected a (W, b) pair, got "
                                 f"{type(pair).__name__}")
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
        self._named(X)
        Xd = check_X(self.backend, X, self.dtype, self.layer_sizes[0])
        lo, m = part or (0, Xd.shape[0])
        head, classes, Y = encode_targets(y, m, self.layer_sizes[-1], head or self.head,
                                          self.classes_ if classes is None else classes,
                                          self.dtype)
        return Xd, self.backend.asarray(Y[lo:lo + Xd.shape[0]], self.dtype), head, classes

    # ------------------------------------------------------------------ inference
    def _named(self, X) -> None:
        """ValueError when X's feature names differ from feature_names_in_ (accelnn.features);
        TypeError for column names that mix strings and other types."""
        check_feature_names(getattr(self, "feature_names_in_", None), X)

    def _logits(self, X):
        """Z[L] for X, in a new backend array, from the weights of one whole step. X's check
        for NaN and Inf is the backend's (`checked_logits`, fused into the forward pass where
        it can); when it finds one, check_X names where."""
        self._named(X)
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
        """Class labels (classifiers: shape (m,)), 0/1 per output (multi-label sigmoid:
        (m, nL)) or outputs (identity head: (m,) for one output, as scikit-learn's
        MLPRegressor, else (m, nL)). Numeric labels come back as an array of the model's
        backend, other labels (text) as a NumPy array. Before any fit, a classifier's labels
        are 0..n-1.

        Decisions come from the logits: softmax keeps their order, and sigmoid(z) > 0.5
        exactly when z > 0 (without the rounding of probabilities next to 0.5)."""
        head = self._need_head()
        Z = self._logits(X)
        if head.name == "identity":
            return Z[:, 0] if Z.shape[1] == 1 else Z
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

    def _weights(self, sample_weight, m: int):
        """(device column (m, 1), host sum) of checked sample weights, or (None, None)."""
        w = unless_uniform(check_sample_weight(sample_weight, m))
        if w is None:
            return None, None
        return self.backend.asarray(w.reshape(-1, 1), self.dtype), float(w.sum())

    def loss_and_grads(self, X, Y, sample_weight=None):
        """(loss, [(dW, db), ...]) at the current weights, as a float and NumPy arrays. Y is
        encoded as in fit (labels, one-hot or values); with sample_weight (m,), the weighted
        mean loss and its gradients (see fit). Changes no weights, head or classes; rejects
        what fit rejects."""
        Xd, Yd, head, _ = self.encode(X, Y)
        w, w_sum = self._weights(sample_weight, Xd.shape[0])
        be, net = self.backend, self.network
        grads = [be.empty(p.shape, self.dtype) for p in self.state.params]
        with self.state.guard.reading():
            loss = float(net.loss_grads(self.state.params, grads, head, Xd, Yd,
                                        net.workspace(Xd.shape[0]), w, w_sum))
        host = [be.to_numpy(g) for g in grads]
        return loss, list(zip(host[0::2], host[1::2]))

    def loss(self, X, Y, sample_weight=None) -> float:
        """The training loss (with the L2 term) at the current weights, as a float; weighted
        with sample_weight. Changes nothing in the model; rejects what fit rejects."""
        Xd, Yd, head, _ = self.encode(X, Y)
        w, w_sum = self._weights(sample_weight, Xd.shape[0])
        net = self.network
        with self.state.guard.reading():
            return float(net.loss(self.state.params, head, Xd, Yd,
                                  net.workspace(Xd.shape[0], backward=False), w, w_sum))

    def evaluate(self, X, y, *, sample_weight=None, metrics=(), return_dict: bool = False):
        """The loss (with the L2 term, as fit reports it) of the model on (X, y), and the
        `metrics` asked for (accuracy, mse, mae, r2, log_loss: see accelnn.metrics), as
        Keras' evaluate returns them: the loss alone as a float without metrics, else the
        list [loss, *metrics] in the order asked, or with return_dict a dict {"loss": ...,
        name: ...}. sample_weight (m,) makes every value the weighted mean. Changes nothing
        in the model; rejects what fit rejects, unknown metrics, and accuracy or log_loss
        for a regressor; RuntimeError before the output is resolved (fit first)."""
        metrics = check_metrics(metrics)
        check_head(metrics, self._need_head())
        Xd, Yd, _, _ = self.encode(X, y)
        w = unless_uniform(check_sample_weight(sample_weight, Xd.shape[0]))
        values = evaluate(self, Data(self, Xd, Yd, weights=w), metrics)
        if return_dict:
            return values
        return values["loss"] if not metrics else list(values.values())

    # ------------------------------------------------------------------ training
    def fit(self, X, y, *, epochs: int = 1, batch_size: int | None = None, optimizer=None,
            lr: float | None = None, lr_schedule="constant", shuffle: bool = True,
            validation_data=None, validation_split: float = 0.0, early_stopping=False,
            metrics=(), callbacks=(), verbose: int = 0, checkpoint=None,
            resume_from=None, sample_weight=None, class_weight=None) -> History:
        """Train with gradient descent (or L-BFGS) and return the per-epoch History.

        epochs: how many epochs to run (with resume_from: up to this epoch in total).
        batch_size: None is full-batch gradient descent (the classic algorithm); otherwise
            mini-batches of a permutation drawn each epoch from the model's seeded RNG (when
            `shuffle`). A memory-mapped X (np.load(..., mmap_mode="r")) with a batch_size is
            streamed a batch at a time, never loaded whole.
        optimizer: "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop" or an Optimizer
            (accelnn.SGD, Adam, AdamW, RMSprop). None continues the model's current optimizer
            and its state (a loaded checkpoint's, or the last fit's), else plain SGD. A new
            optimizer starts fresh state and restarts the epoch count `epoch_`.
            "lbfgs" or accelnn.LBFGS(max_fun, gtol, ftol): scipy's L-BFGS-B, full batch, as
            scikit-learn's solver="lbfgs"; `epochs` is then its maximum of iterations, and
            the History has an entry per iteration (see accelnn.lbfgs). It takes no
            batch_size, lr, schedule, checkpoint or resume_from.
        lr: the initial learning rate (default: the optimizer's); lr_schedule: "constant",
            "step", "exponential", "cosine", "invscaling", "adaptive" or a Schedule
            (accelnn.schedules), evaluated once per epoch.
        validation_data=(X_val, y_val), (X_val, y_val, sample_weight_val) (Keras' form) or
            validation_split (a seeded fraction held out, with its rows' weights) add
            "val_loss" to the history; metrics=("accuracy", "mse", "mae", "r2", "log_loss")
            add each (accelnn.metrics) on the training data and, as val_<name>, on validation.
        early_stopping: True (val_loss, patience 10, restore best weights) or an
            accelnn.EarlyStopping; the best weights come back whatever ends the fit.
        callbacks: Keras' callback objects (on_train_begin, on_epoch_begin, on_epoch_end,
            on_train_end, set_model: see accelnn.callbacks), objects whose on_epoch_end takes
            (epoch, logs, model), or callables cb(epoch, logs, model); setting
            model.stop_training ends the fit after the epoch.
        verbose: 1 shows a progress bar on a terminal (tqdm when installed) and a line per
            epoch where stderr is no terminal (logs, CI, notebooks), 2 prints a line per epoch
            anywhere, 0 is silent. checkpoint: a path saved (atomically) after every epoch.
        resume_from: a checkpoint of this architecture; restores weights, optimizer state,
            RNG, epoch count and schedule state, then trains on to `epochs`, so that 5 epochs
            + checkpoint + resume to 10 equals 10 epochs in one go.
        sample_weight: a weight >= 0 per row of X. The loss and every gradient become the
            weighted mean over a batch, sum_i w_i l_i / sum_i w_i, and the L2 term counts
            sum(w) rows (scikit-learn's sample_weight), so integer weights equal repeating
            rows and zero weights equal dropping them (full batch). Mini-batches are
            weighted as in Keras, each batch by its own weights (Keras 3's reduction
            "mean_with_sample_weight"; accelnn.batches).
        class_weight: "balanced" or {label: weight} (labels of classes_; missing ones weigh
            1), multiplied into each row's weight (a single-label classifier only; see
            accelnn.weighting).

        Rejects, before anything changes: bad X or y (see the README's input rules), labels
        outside the classes of an earlier fit, epochs < 1, batch_size < 1, lr <= 0, unknown
        optimizer, schedule or metric names, a validation_split outside [0, 1), both kinds of
        validation, early stopping on validation without validation data, accuracy or
        log_loss for a regressor, a checkpoint of another architecture or already at
        `epochs`, sample weights that are not one number >= 0 per row (or all zero), a
        class_weight for a regressor or multi-label targets or naming a label that is not a
        class, what L-BFGS does not take, a shuffle that is not a bool (or NumPy bool), a
        checkpoint or resume_from that is not a path. If the loss becomes NaN or Inf, raises
        DivergenceError and keeps the weights of the last epoch whose loss was finite.
        """
        return training.fit(
            self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
            lr_schedule=lr_schedule, shuffle=shuffle, validation_data=validation_data,
            validation_split=validation_split, early_stopping=early_stopping,
            metrics=metrics, callbacks=callbacks, verbose=verbose, checkpoint=checkpoint,
            resume_from=resume_from, sample_weight=sample_weight, class_weight=class_weight)

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
        step = steps.step_function(self.network, self.state, head)
        return lambda: step(Xd, Yd, lr)

    # ------------------------------------------------------------------ files
    def to_onnx(self, path) -> None:
        """Write the forward pass as an ONNX graph (float32, opset 17): input "X" (N, n0),
        output "output" = forward(X) (see accelnn.export). Needs the onnx package
        (ImportError saying how to get it) and a resolved output (RuntimeError)."""
        self._need_head()
        export.write_mlp(self, path)

    def save(self, path) -> None:
        """Write weights, configuration, classes, feature names, RNG state, epoch and sample
        counts and optimizer state to one .npz file, atomically; it loads without pickle. See
        accelnn.io."""
        io.save(path, self.file_record(self.state.saved()))

    def file_record(self, saved) -> io.ModelFile:
        """What a file holds of this model, with the training state `saved` (a SavedState)."""
        names = getattr(self, "feature_names_in_", None)
        return io.ModelFile(self.get_config(), self.classes_, saved,
                            None if names is None else [str(n) for n in names])

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
        if record.feature_names is not None:
            model.feature_names_in_ = np.asarray(record.feature_names, dtype=object)
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
