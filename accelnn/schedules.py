"""Learning-rate schedules, evaluated on the host once per epoch (no device work).

    constant                       lr0
    step(step_size, gamma)         lr0 * gamma ** (epoch // step_size)
    exponential(gamma)             lr0 * gamma ** epoch
    cosine(t_max, lr_min)          lr_min + (lr0 - lr_min) (1 + cos(pi e / t_max)) / 2,
                                   e = min(epoch, t_max)
    invscaling(power_t, t0)        lr0 / (t + 1) ** power_t, t = t0 + samples seen (scikit-learn)
    adaptive(patience, tol)        lr divided by 5 each time more than `patience` epochs in a row
                                   fail to lower the monitored loss by `tol` (scikit-learn)

`epoch` counts from 0 over the whole training run, a resumed run included, and `samples_seen`
is the training state's count of rows trained on with the current optimizer (also kept through
checkpoints): no schedule recomputes either from the data of the current call. `adaptive` and
`cosine` (its t_max, when it defaults to the first fit's epochs) have state; `state()` /
`load_state()` carry it through checkpoints.
"""

from __future__ import annotations

import math


def _positive(name, value, *, integer=False, allow_zero=False):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} {'>= 0' if allow_zero else '> 0'}, "
                         f"got {value!r}")
    return value


class Schedule:
    name = "constant"

    def lr(self, lr0: float, epoch: int, samples_seen: int) -> float:
        return lr0

    def end_epoch(self, monitored: float) -> None:
        """Called after each epoch with the monitored loss (only `adaptive` uses it)."""

    def bind(self, total_epochs: int, first: int = 0) -> None:
        """Told, before a fit, the epoch its run ends at and the epoch it starts from (0 for
        a fresh optimizer, more for a fit that continues one); only `cosine` uses it."""

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        """Take over `state()` of a run (from a checkpoint: untrusted); ValueError from
        `check_state`, before anything changes, when it is malformed."""
        self.check_state(state)

    def check_state(self, state) -> dict:
        """`state` (read from a file) checked: a dict with exactly the keys `state()` gives,
        each a valid value; ValueError otherwise. It can then be given to `load_state`."""
        if not isinstance(state, dict) or set(state) != set(self.state()):
            raise ValueError(f"the {self.name} schedule's state must be a dict with the keys "
                             f"{sorted(self.state())}, got {state!r}")
        return dict(state)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class StepDecay(Schedule):
    name = "step"

    def __init__(self, step_size: int = 10, gamma: float = 0.5):
        self.step_size = _positive("step_size", step_size, integer=True)
        self.gamma = _positive("gamma", gamma)

    def lr(self, lr0, epoch, samples_seen):
        return lr0 * self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    name = "exponential"

    def __init__(self, gamma: float = 0.95):
        self.gamma = _positive("gamma", gamma)

    def lr(self, lr0, epoch, samples_seen):
        return lr0 * self.gamma**epoch


class Cosine(Schedule):
    """Cosine annealing to `lr_min` over `t_max` epochs (default: the epochs of the fit that
    starts the run, from epoch 0; a fit that continues it keeps that length)."""

    name = "cosine"

    def __init__(self, t_max: int | None = None, lr_min: float = 0.0):
        self.t_max = None if t_max is None else _positive("t_max", t_max, integer=True)
        self.lr_min = _positive("lr_min", lr_min, allow_zero=True)
        self._t_max = self.t_max

    def bind(self, total_epochs, first=0):
        if first == 0 or self._t_max is None:
            self._t_max = self.t_max or total_epochs

    def lr(self, lr0, epoch, samples_seen):
        frac = min(epoch, self._t_max) / self._t_max
        return self.lr_min + (lr0 - self.lr_min) * (1 + math.cos(math.pi * frac)) / 2

    def state(self):
        return {"t_max": self._t_max}  # a resumed run keeps annealing over the first run's

    def load_state(self, state):
        self._t_max = self.check_state(state)["t_max"]

    def check_state(self, state):
        state = super().check_state(state)
        _positive("t_max", state["t_max"], integer=True)
        return state


class InvScaling(Schedule):
    """scikit-learn's inverse scaling, lr0 / (t + 1) ** power_t, t = t0 + samples_seen: the rows
    trained on with the current optimizer (the training state's count, kept through
    checkpoints), after `t0` rows seen before it (a warm-started scikit-learn fit continues
    its t_ with a fresh optimizer)."""

    name = "invscaling"

    def __init__(self, power_t: float = 0.5, t0: int = 0):
        self.power_t = _positive("power_t", power_t, allow_zero=True)
        self.t0 = _positive("t0", t0, integer=True, allow_zero=True)

    def lr(self, lr0, epoch, samples_seen):
        return lr0 / (self.t0 + samples_seen + 1) ** self.power_t


class Adaptive(Schedule):
    name = "adaptive"

    def __init__(self, patience: int = 10, tol: float = 1e-4, factor: float = 5.0):
        self.patience = _positive("patience", patience, integer=True, allow_zero=True)
        self.tol = _positive("tol", tol, allow_zero=True)
        self.factor = _positive("factor", factor)
        self._scale, self._best, self._bad = 1.0, math.inf, 0

    def lr(self, lr0, epoch, samples_seen):
        return lr0 * self._scale

    def end_epoch(self, monitored):
        self._bad = self._bad + 1 if monitored > self._best - self.tol else 0
        self._best = min(self._best, monitored)
        if self._bad > self.patience:
            self._bad = 0
            self._scale /= self.factor

    def state(self):
        return {"scale": self._scale, "best": self._best, "bad": self._bad}

    def load_state(self, state):
        state = self.check_state(state)
        self._scale, self._best, self._bad = state["scale"], state["best"], state["bad"]

    def check_state(self, state):
        state = super().check_state(state)
        _positive("scale", state["scale"])
        _positive("bad", state["bad"], integer=True, allow_zero=True)
        best = state["best"]  # inf until the first epoch has ended
        if not (isinstance(best, (int, float)) and not isinstance(best, bool)
                and not math.isnan(best) and best != -math.inf):
            raise ValueError(f"best must be a number or inf, got {best!r}")
        return state


SCHEDULES = {s.name: s for s in (Schedule, StepDecay, Exponential, Cosine, InvScaling, Adaptive)}


def get_schedule(spec) -> Schedule:
    """A schedule from a name (constant, step, exponential, cosine, invscaling, adaptive: with
    default parameters) or a Schedule instance. Raises ValueError for unknown names."""
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, str) or spec.lower() not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule {spec!r}; choose one of: "
                         f"{', '.join(SCHEDULES)} or a Schedule")
    return SCHEDULES[spec.lower()]()
