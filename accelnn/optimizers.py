"""Optimizers: small objects holding hyper-parameters, each with its update rule stated once.

    SGD(lr, momentum=0, nesterov=False)   p -= lr g  (momentum: scikit-learn's formulation)
    Adam(lr, beta1, beta2, eps, weight_decay=0)   bias correction folded into the step size
    AdamW(lr, ..., weight_decay=0.01)     Adam with decoupled weight decay p *= 1 - lr wd
    RMSprop(lr, rho, eps)                 v = rho v + (1 - rho) g^2;  p -= lr g / (sqrt(v) + eps)

An update rule (`Rule`) is a name and a reference: the in-place update of ONE parameter written
against the array module `xp`, `reference(xp, p, g, *state_arrays, *scalars)`. Its scalars are
folded on the host once per step by the optimizer's `step_scalars(state, lr)` (Adam counts the
step there and folds the bias correction into its step size) and reach the arrays as Python
floats, so they act in the arrays' dtype. `Optimizer.update` hands the rule, the arrays and the
scalars to the backend's one entry point, `Backend.update`: its generic path applies the
reference to every parameter; a backend with kernels looks the rule's name up in its table of
fused kernels, which compute the same operations in the same order (tests hold them to it).

Each optimizer's state is a dict of lists of backend arrays (one per parameter) plus host
scalars; `state_arrays`/`state_scalars` name them for checkpoints.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def check_range(name: str, value, low: float, high: float = math.inf, *, low_open=False,
                high_open=False) -> float:
    """`value` as a float when it is a finite real number in the interval; else ValueError
    naming `name` and the interval (booleans are refused)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)


def check_lr(lr) -> float:
    """Validate a learning rate: a finite number > 0."""
    return check_range("lr", lr, 0.0, low_open=True)


@dataclass(frozen=True)
class Rule:
    """An update rule: `name`, the key of the backends' kernel tables, and `reference`, the
    in-place update of one parameter, `reference(xp, p, g, *state_arrays, *scalars)`, which
    every backend's generic path runs and every kernel must equal. `states` names the state
    arrays it updates (its parameters after xp, p and g); `scalars` names the rest."""

    name: str
    reference: Callable[..., None]
    n_states: int

    @property
    def states(self) -> tuple[str, ...]:
        return self._arguments[:self.n_states]

    @property
    def scalars(self) -> tuple[str, ...]:
        return self._arguments[self.n_states:]

    @property
    def _arguments(self) -> tuple[str, ...]:
        return tuple(inspect.signature(self.reference).parameters)[3:]


def _sgd(xp, p, g, lr):
    """p <- p - lr g: gradient descent."""
    g *= lr
    p -= g


def _velocity(v, g, lr, mu):
    """v <- mu v - lr g, leaving lr g in g: the velocity of both momentum rules."""
    v *= mu
    g *= lr
    v -= g


def _momentum(xp, p, g, v, lr, mu):
    """v <- mu v - lr g;  p <- p + v: heavy-ball momentum in scikit-learn's formulation
    (sklearn.neural_network._stochastic_optimizers.SGDOptimizer, velocity update)."""
    _velocity(v, g, lr, mu)
    p += v


def _nesterov(xp, p, g, v, lr, mu):
    """v <- mu v - lr g;  p <- p - lr g + mu v: Nesterov's momentum in scikit-learn's
    formulation (SGDOptimizer with nesterov=True: the update mu v - lr g after the velocity)."""
    _velocity(v, g, lr, mu)
    p -= g
    xp.multiply(v, mu, out=g)
    p += g


def _adam(xp, p, g, m, v, lr_t, beta1, beta2, c1, c2, eps, decay):
    """Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", sec. 2: the bias
    correction folded into the step size lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t), as in
    scikit-learn's AdamOptimizer):

        m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
        p <- decay p - lr_t m / (sqrt(v) + eps)

    with c1 = 1 - beta1 and c2 = (1 - beta2) / c1^2 (so that (c1 g)^2 c2 is (1 - beta2) g^2
    without a second temporary), and decay = 1 - lr wd: AdamW's decoupled weight decay
    (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", Algorithm 2), 1 for Adam."""
    if decay != 1.0:
        p *= decay
    m *= beta1
    v *= beta2
    g *= c1
    m += g
    g *= g
    g *= c2
    v += g
    xp.sqrt(v, out=g)
    g += eps
    xp.divide(m, g, out=g)
    g *= lr_t
    p -= g


def _rmsprop(xp, p, g, sq, lr, rho, c, eps):
    """RMSprop (Tieleman & Hinton, Coursera "Neural Networks for Machine Learning", lecture
    6.5): sq <- rho sq + c g^2 with c = 1 - rho;  p <- p - lr g / (sqrt(sq) + eps)."""
    sq *= rho
    sq += c * (g * g)
    g *= lr
    g /= xp.sqrt(sq) + eps
    p -= g


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("sgd", _sgd, 0), Rule("momentum", _momentum, 1), Rule("nesterov", _nesterov, 1),
    Rule("adam", _adam, 2), Rule("rmsprop", _rmsprop, 1))}


class Optimizer:
    """Hyper-parameters and an update rule. A subclass names its `rule` (one of RULES, or a
    Rule of its own, which backends then run on their generic path) and folds the rule's
    scalars in `step_scalars`; or it overrides `update` altogether."""

    name = "optimizer"
    default_lr = 0.01
    rule: Rule | None = None
    state_arrays: tuple[str, ...] = ()  # per-parameter arrays in the state dict
    state_scalars: tuple[str, ...] = ()  # host numbers in the state dict

    def __init__(self, lr: float | None = None):
        self.lr = check_lr(self.default_lr if lr is None else lr)

    def init_state(self, backend, params) -> dict:
        state = {k: [backend.zeros(p.shape, p.dtype) for p in params] for k in self.state_arrays}
        return {**state, **dict.fromkeys(self.state_scalars, 0)}

    def config(self) -> dict:
        """Name and hyper-parameters: `OPTIMIZERS[c["name"]](**c["params"])` rebuilds it."""
        return {"name": self.name, "params": dict(vars(self))}

    def step_scalars(self, state: dict, lr: float) -> tuple[float, ...]:
        """The scalars of `rule` for one step with learning rate `lr`, as Python floats, in
        the order of the rule's `scalars`; advances the host state of a step (Adam's t)."""
        raise NotImplementedError

    def update(self, backend, params, grads, state: dict, lr: float) -> None:
        """One step, in place on params and the state (grads are scratch)."""
        backend.update(self.rule, params, grads, [state[k] for k in self.state_arrays],
                       self.step_scalars(state, lr))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent; with `momentum` > 0 heavy-ball momentum, optionally Nesterov's."""

    name = "sgd"
    default_lr = 0.1

    def __init__(self, lr: float | None = None, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(lr)
        self.momentum = check_range("momentum", momentum, 0.0, 1.0, high_open=True)
        self.nesterov = bool(nesterov)

    @property
    def rule(self):
        if not self.momentum:
            return RULES["sgd"]
        return RULES["nesterov" if self.nesterov else "momentum"]

    @property
    def state_arrays(self):
        return ("velocity",) if self.momentum else ()

    def step_scalars(self, state, lr):
        return (float(lr), self.momentum) if self.momentum else (float(lr),)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction folded into the step size; `weight_decay` > 0
    makes it AdamW (Loshchilov & Hutter), decay decoupled from the gradient."""

    name = "adam"
    default_lr = 0.001
    rule = RULES["adam"]
    state_arrays = ("m", "v")
    state_scalars = ("t",)

    def __init__(self, lr: float | None = None, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr)
        self.beta1 = check_range("beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = check_range("beta2", beta2, 0.0, 1.0, high_open=True)
        self.eps = check_range("eps", eps, 0.0, low_open=True)
        self.weight_decay = check_range("weight_decay", weight_decay, 0.0)

    def step_scalars(self, state, lr):
        state["t"] += 1
        t, lr, b1, b2 = state["t"], float(lr), self.beta1, self.beta2
        lr_t = lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        return (lr_t, b1, b2, 1.0 - b1, (1.0 - b2) / (1.0 - b1) ** 2, self.eps,
                1.0 - lr * self.weight_decay)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), 0.01 by default."""

    name = "adamw"

    def __init__(self, lr: float | None = None, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton): a running mean of squared gradients scales each step."""

    name = "rmsprop"
    default_lr = 0.001
    rule = RULES["rmsprop"]
    state_arrays = ("sq",)

    def __init__(self, lr: float | None = None, rho: float = 0.9, eps: float = 1e-8):
        super().__init__(lr)
        self.rho = check_range("rho", rho, 0.0, 1.0, high_open=True)
        self.eps = check_range("eps", eps, 0.0, low_open=True)

    def step_scalars(self, state, lr):
        return float(lr), self.rho, 1.0 - self.rho, self.eps


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)}


def get_optimizer(spec, lr: float | None = None) -> Optimizer:
    """An optimizer from a name ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"),
    built with learning rate `lr` (None: its default), or an Optimizer instance, returned as
    it is. Raises ValueError for unknown names and invalid hyper-parameters."""
    if isinstance(spec, Optimizer):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {type(spec).__name__}")
    key = spec.lower()
    presets = {"sgd": lambda: SGD(lr), "momentum": lambda: SGD(lr, momentum=0.9),
               "nesterov": lambda: SGD(lr, momentum=0.9, nesterov=True),
               "adam": lambda: Adam(lr), "adamw": lambda: AdamW(lr),
               "rmsprop": lambda: RMSprop(lr)}
    if key not in presets:
        raise ValueError(f"unknown optimizer {spec!r}; choose one of: {', '.join(presets)}")
    return presets[key]()
