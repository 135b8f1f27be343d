"""Optimizers: small objects holding hyper-parameters; their state lives on the model's backend
and every update is one fused, in-place backend primitive (see `Backend.*_update`).

    SGD(lr, momentum=0, nesterov=False)   p -= lr g  (momentum: scikit-learn's formulation)
    Adam(lr, beta1, beta2, eps, weight_decay=0)   bias correction folded into the step size
    AdamW(lr, ..., weight_decay=0.01)     Adam with decoupled weight decay p *= 1 - lr wd
    RMSprop(lr, rho, eps)                 v = rho v + (1 - rho) g^2;  p -= lr g / (sqrt(v) + eps)

Each optimizer's state is a dict of lists of backend arrays (one per parameter) plus host
scalars; `state_arrays`/`state_scalars` name them for checkpoints.
"""

from __future__ import annotations

import math

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


class Optimizer:
    name = "optimizer"
    default_lr = 0.01
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

    def update(self, backend, params, grads, state: dict, lr: float) -> None:
        raise NotImplementedError

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
    def state_arrays(self):
        return ("velocity",) if self.momentum else ()

    def update(self, backend, params, grads, state, lr):
        if self.momentum == 0.0:
            backend.sgd_update(params, grads, lr)
        else:
            backend.momentum_update(params, grads, state["velocity"], lr, self.momentum,
                                    self.nesterov)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction folded into the step size; `weight_decay` > 0
    makes it AdamW (Loshchilov & Hutter), decay decoupled from the gradient."""

    name = "adam"
    default_lr = 0.001
    state_arrays = ("m", "v")
    state_scalars = ("t",)

    def __init__(self, lr: float | None = None, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr)
        self.beta1 = check_range("beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = check_range("beta2", beta2, 0.0, 1.0, high_open=True)
        self.eps = check_range("eps", eps, 0.0, low_open=True)
        self.weight_decay = check_range("weight_decay", weight_decay, 0.0)

    def update(self, backend, params, grads, state, lr):
        state["t"] += 1
        backend.adam_update(params, grads, state["m"], state["v"], lr, self.beta1, self.beta2,
                            self.eps, state["t"], self.weight_decay)


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
    state_arrays = ("sq",)

    def __init__(self, lr: float | None = None, rho: float = 0.9, eps: float = 1e-8):
        super().__init__(lr)
        self.rho = check_range("rho", rho, 0.0, 1.0, high_open=True)
        self.eps = check_range("eps", eps, 0.0, low_open=True)

    def update(self, backend, params, grads, state, lr):
        backend.rmsprop_update(params, grads, state["sq"], lr, self.rho, self.eps)


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
