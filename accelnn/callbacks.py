"""What a fit reports and who listens: the per-epoch History, EarlyStopping, the progress
display, and the callbacks a user passes (Keras' `keras.callbacks` holds the same kinds)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

MONITORS = ("loss", "val_loss", "accuracy", "val_accuracy")


class History:
    """Per-epoch logs of a fit: `history["loss"]`, and when asked for, "val_loss",
    "accuracy", "val_accuracy"; "lr" is the learning rate each epoch ran with."""

    def __init__(self):
        self.history: dict[str, list[float]] = {"loss": []}
        self.epochs = 0
        self.stopped_early = False

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

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
    """Stop when `monitor` ("val_loss", "val_accuracy", "loss" or "accuracy") has not
    improved by more than `min_delta` for `patience` epochs; with `restore_best_weights` the
    model ends with the weights of its best epoch. Rejects unknown monitors, patience < 1
    and min_delta < 0."""

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 restore_best_weights: bool = True):
        if monitor not in MONITORS:
            raise ValueError(f"unknown monitor {monitor!r}; choose one of: {', '.join(MONITORS)}")
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
        self.sign = -1.0 if "accuracy" in monitor else 1.0  # lower is better after the sign

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best_weights="
                f"{self.restore_best_weights})")


def as_callback(cb) -> Callable[[int, dict, Any], Any]:
    if hasattr(cb, "on_epoch_end"):
        return cb.on_epoch_end
    if callable(cb):
        return cb
    raise TypeError(f"a callback must be callable or have on_epoch_end, got {cb!r}")


class Progress:
    """A tqdm bar on a terminal when verbose (plain text when tqdm is missing); verbose=2
    prints one line per epoch anywhere; silent otherwise."""

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
        if not (self.tty or self.verbose == 2):
            return
        text = " ".join(f"{k} {v:.4g}" for k, v in logs.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.tty:
            sys.stderr.write(f"\repoch {epoch}/{self.epochs} {text}   ")
            sys.stderr.flush()
        elif self.verbose == 2:
            print(f"epoch {epoch}/{self.epochs} {text}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.tty:
            sys.stderr.write("\n")
