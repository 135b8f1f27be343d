"""What a fit reports and who listens: the per-epoch History, EarlyStopping and its per-fit
bookkeeping, the progress display, and the callbacks a user passes (Keras' `keras.callbacks`
holds the same kinds).

Callbacks come in three forms, all accepted by `fit(callbacks=[...])`:

    Keras' objects   on_train_begin(logs), on_epoch_begin(epoch, logs), on_epoch_end(epoch,
                     logs), on_train_end(logs), each optional, and set_model(model), called
                     first (accelnn.callbacks.Callback gives all of them and `.model`); `epoch`
                     counts from 0, as in Keras
    accelnn's own    objects whose on_epoch_end takes (epoch, logs, model), and plain callables
                     cb(epoch, logs, model); `epoch` counts from 1 (the epochs run so far)

Any of them may set `model.stop_training = True` to end the fit after the current epoch.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator, Mapping

import numpy as np

from accelnn.metrics import HIGHER_IS_BETTER, METRICS

MONITORS = ("loss", *METRICS)


class History(Mapping):
    """Per-epoch logs of a fit, a read-only mapping from names to lists (one value per epoch):
    "loss", and when asked for, "val_loss", the metrics and their "val_" forms; "lr" is the
    learning rate each epoch ran with (gradient-descent optimizers). `history.history` is the
    plain dict, as in Keras; `epochs` counts the epochs run; `stopped_early` says whether early
    stopping ended the fit; for L-BFGS, `converged` and `message` say why the solver stopped
    (None for the other optimizers). A missing key raises KeyError naming those present."""

    def __init__(self):
        self.history: dict[str, list[float]] = {"loss": []}
        self.epochs = 0
        self.stopped_early = False
        self.converged: bool | None = None
        self.message: str | None = None

    def __getitem__(self, key: str) -> list[float]:
        try:
            return self.history[key]
        except KeyError:
            raise KeyError(f"{key!r} is not in this history; it holds "
                           f"{', '.join(map(repr, self.history))}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.history)

    def __len__(self) -> int:
        return len(self.history)

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        self.epochs += 1

    def plot(self, path) -> None:
        """Save the loss curves (and accuracy curves, when recorded) as a PNG. Needs
        matplotlib (pip install accelnn[bench]); raises ImportError saying so."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: pip install 'accelnn[bench]'"
                              ) from exc
        panels = [k for k in ("loss", "accuracy") if k in self or f"val_{k}" in self]
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
        for ax, key in zip(axes[0], panels):
            for name in (key, f"val_{key}"):
                if name in self:
                    ax.plot(range(1, len(self[name]) + 1), self[name], label=name)
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def __repr__(self) -> str:
        last = {k: v[-1] for k, v in self.history.items() if v}
        return f"History(epochs={self.epochs}, last={last})"


class EarlyStopping:
    """Stop when `monitor` ("loss", a metric of accelnn.metrics, or either with "val_") has
    not improved by more than `min_delta` for `patience` epochs. With `restore_best_weights`,
    the model ends the fit with the weights of its best epoch, whatever ends it (patience,
    the last epoch, a callback), as Keras 3 does. Higher is better for accuracy and r2, lower
    for the rest. Rejects unknown monitors, patience < 1 and min_delta < 0."""

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 restore_best_weights: bool = True):
        if monitor.removeprefix("val_") not in MONITORS:
            raise ValueError(f"unknown monitor {monitor!r}; choose one of: "
                             f"{', '.join(MONITORS)}, or one of them with 'val_'")
        if not (isinstance(patience, (int, np.integer)) and not isinstance(patience, bool)
                and patience >= 1):
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if not (isinstance(min_delta, (int, float, np.integer, np.floating))
                and not isinstance(min_delta, bool) and min_delta >= 0):
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        if not isinstance(restore_best_weights, (bool, np.bool_)):
            raise TypeError(f"restore_best_weights must be True or False, got "
                            f"{restore_best_weights!r}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        # lower is better after the sign
        self.sign = -1.0 if monitor.removeprefix("val_") in HIGHER_IS_BETTER else 1.0

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best_weights="
                f"{self.restore_best_weights})")


class Stopping:
    """One fit's early-stopping bookkeeping for the rule `rule` on the training state `state`:
    the best score, the epochs since it, and (restore_best_weights) a copy of the best
    epoch's parameters, kept in buffers reused across improvements."""

    def __init__(self, rule: EarlyStopping, state):
        self.rule, self.state = rule, state
        self.best_score, self.wait, self.best = float("inf"), 0, None

    def update(self, logs: dict) -> bool:
        """Book one epoch's logs; True when patience has run out."""
        rule = self.rule
        score = rule.sign * logs[rule.monitor]
        if score < self.best_score - rule.min_delta:
            self.best_score, self.wait = score, 0
            if rule.restore_best_weights:
                be, params = self.state.backend, self.state.params
                if self.best is None:
                    self.best = [be.copy(p) for p in params]
                else:
                    for keep, p in zip(self.best, params):
                        keep[...] = p
            return False
        self.wait += 1
        return self.wait >= rule.patience

    def restore(self) -> None:
        """Put the best epoch's parameters back (when they were kept)."""
        if self.best is not None:
            self.state.set_params(self.best)


class Callback:
    """Keras' callback base class: override the hooks you need. fit calls set_model(model)
    first, so `self.model` is the MLP being trained; `epoch` counts from 0."""

    model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None) -> None:
        """Before the first epoch; logs is an empty dict."""

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        """Before epoch `epoch`; logs is an empty dict."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        """After epoch `epoch`, with its logs (loss, metrics, val_*, lr)."""

    def on_train_end(self, logs=None) -> None:
        """After the last epoch (and any weight restore), with the last epoch's logs."""


HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end")


def _takes_model(method) -> bool:
    """True when `method` accepts three positional arguments: accelnn's on_epoch_end(epoch,
    logs, model), not Keras' on_epoch_end(epoch, logs=None)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds for p in params) >= 3


class CallbackList:
    """The callbacks of one fit, each called in its own form (see the module docstring).
    Rejects (TypeError) an object that is neither callable nor has any hook."""

    def __init__(self, callbacks):
        self.objects, self.plain = [], []
        if callbacks is None:
            callbacks = ()
        if not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of callbacks, got {callbacks!r}")
        for cb in callbacks:
            if any(hasattr(cb, h) for h in HOOKS):
                end = getattr(cb, "on_epoch_end", None)
                if end is not None and _takes_model(end):
                    self.plain.append(end)
                self.objects.append(cb)
            elif callable(cb):
                self.plain.append(cb)
            else:
                raise TypeError(f"a callback must be callable or have on_epoch_end (or another "
                                f"of Keras' hooks: {', '.join(HOOKS)}), got {cb!r}")

    def _call(self, hook: str, *args) -> None:
        for cb in self.objects:
            method = getattr(cb, hook, None)
            if method is not None and not (hook == "on_epoch_end" and method in self.plain):
                method(*args)

    def train_begin(self, model) -> None:
        for cb in self.objects:
            if hasattr(cb, "set_model"):
                cb.set_model(model)
        self._call("on_train_begin", {})

    def epoch_begin(self, epoch: int) -> None:
        """Before epoch `epoch` (counted from 0)."""
        self._call("on_epoch_begin", epoch, {})

    def epoch_end(self, epoch: int, logs: dict, model) -> None:
        """After epoch `epoch` (counted from 0): Keras' hooks get `epoch`, accelnn's own forms
        the number of epochs run, epoch + 1."""
        self._call("on_epoch_end", epoch, logs)
        for cb in self.plain:
            cb(epoch + 1, logs, model)

    def train_end(self, logs: dict) -> None:
        self._call("on_train_end", logs)


class Progress:
    """verbose=1: a tqdm bar on a terminal (plain text when tqdm is missing), and where
    stderr is no terminal (logs, CI, notebooks) one line per epoch, as verbose=2 prints
    anywhere; silent for 0."""

    def __init__(self, verbose: int, epochs: int):
        self.verbose, self.bar = verbose, None
        self.tty = verbose == 1 and sys.stderr.isatty()
        if self.tty:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=epochs, unit="epoch", leave=True)
            except ImportError:
                self.bar = None
        self.epochs = epochs

    def update(self, epoch: int, logs: dict) -> None:
        if not self.verbose:
            return
        text = " ".join(f"{k} {v:.4g}" for k, v in logs.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.tty:
            sys.stderr.write(f"\repoch {epoch}/{self.epochs} {text}   ")
            sys.stderr.flush()
        else:
            print(f"epoch {epoch}/{self.epochs} {text}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.tty:
            sys.stderr.write("\n")
