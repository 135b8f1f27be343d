"""Hidden-layer activations as a small named table (the scikit-learn way).

Every activation here has a derivative that can be written from its *output* A = g(Z), so the
forward pass overwrites Z with A in place and backward needs nothing else:

    name        g(z)                        g'(z) written from a = g(z)
    identity    z                           1
    sigmoid     1 / (1 + exp(-z))           a (1 - a)
    tanh        tanh(z)                     1 - a^2
    relu        max(z, 0)                   1 if a > 0 else 0
    leaky_relu  z if z > 0 else 0.01 z      1 if a > 0 else 0.01
    softplus    log(1 + exp(z))             1 - exp(-a)   (= sigmoid(z))

`forward(xp, Z)` overwrites Z with g(Z); `grad(xp, dA, A)` overwrites dA with dA * g'(A).
Both are written once against the array module `xp` and serve as every backend's fallback.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[Any, Any], None]
    grad: Callable[[Any, Any, Any], None]
    init: str  # "glorot" (uniform, fan_in + fan_out) or "he" (uniform, fan_in)

    def init_bound(self, fan_in: int, fan_out: int) -> float:
        """Half-width of the uniform initialisation: Glorot for saturating units, He for ReLUs."""
        if self.init == "he":
            return math.sqrt(6.0 / fan_in)
        return math.sqrt(6.0 / (fan_in + fan_out))


def _identity_forward(xp, Z):
    pass


def _identity_grad(xp, dA, A):
    pass


def _sigmoid_forward(xp, Z):
    # 0.5 * (1 + tanh(z / 2)) equals 1 / (1 + exp(-z)) and never overflows.
    xp.multiply(Z, 0.5, out=Z)
    xp.tanh(Z, out=Z)
    xp.add(Z, 1.0, out=Z)
    xp.multiply(Z, 0.5, out=Z)


def _sigmoid_grad(xp, dA, A):
    dA *= A
    dA *= 1.0 - A


def _tanh_forward(xp, Z):
    xp.tanh(Z, out=Z)


def _tanh_grad(xp, dA, A):
    dA *= 1.0 - A * A


def _relu_forward(xp, Z):
    xp.maximum(Z, 0.0, out=Z)


def _relu_grad(xp, dA, A):
    dA *= A > 0


def _leaky_relu_forward(xp, Z):
    xp.maximum(Z, Z * LEAKY_SLOPE, out=Z)


def _leaky_relu_grad(xp, dA, A):
    dA *= xp.where(A > 0, 1.0, LEAKY_SLOPE).astype(dA.dtype, copy=False)


def _softplus_forward(xp, Z):
    # log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), stable for any z.
    tail = xp.log1p(xp.exp(-xp.abs(Z)))
    xp.maximum(Z, 0.0, out=Z)
    Z += tail


def _softplus_grad(xp, dA, A):
    dA *= -xp.expm1(-A)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", _identity_forward, _identity_grad, "glorot"),
        Activation("sigmoid", _sigmoid_forward, _sigmoid_grad, "glorot"),
        Activation("tanh", _tanh_forward, _tanh_grad, "glorot"),
        Activation("relu", _relu_forward, _relu_grad, "he"),
        Activation("leaky_relu", _leaky_relu_forward, _leaky_relu_grad, "he"),
        Activation("softplus", _softplus_forward, _softplus_grad, "he"),
    )
}
ALIASES = {"logistic": "sigmoid", "linear": "identity", "none": "identity"}


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name (or alias); raise ValueError naming the choices."""
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name, got {type(name).__name__}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in ACTIVATIONS:
        choices = ", ".join(sorted(ACTIVATIONS) + sorted(ALIASES))
        raise ValueError(f"unknown activation {name!r}; choose one of: {choices}")
    return ACTIVATIONS[key]
