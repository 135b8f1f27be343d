"""Output heads: an output activation matched with its loss.

Each pair is chosen so that the gradient of the loss with respect to the output layer's
pre-activation Z[L] is the same simple expression, (A[L] - Y) / m:

    head      A[L] = h(Z)            loss (mean over the m samples)
    sigmoid   1 / (1 + exp(-z))      binary cross-entropy, summed over outputs
    softmax   exp(z) / sum exp(z)    categorical cross-entropy (rows of Y sum to 1)
    identity  z                      squared error, 1/(2m) sum over samples and outputs

That is why the output delta is `A - Y` and not a product of dLoss/dA and h'(Z): the two
factors cancel analytically, and computing them apart loses precision (and divides by zero when
a sigmoid saturates). The losses are computed from the logits Z, never from A, with
log1p/log-sum-exp forms that cannot overflow.

`loss_delta(xp, Z, Y, out)` writes (h(Z) - Y) / m into `out` (which may be Z itself) and returns
the loss as a 0-d array of the backend (it stays on the device). `activate(xp, Z)` overwrites Z
with h(Z) for prediction.

Sample weights: `loss_delta(xp, Z, Y, out, v)` with a column v (m, 1) of normalised weights,
v_i = w_i / sum(w), takes the weighted mean instead: loss = sum_i v_i l_i, and out_i =
v_i (h(Z_i) - Y_i), its exact gradient (v_i = 1/m is the unweighted case; scikit-learn's
`_backprop` scales its deltas by the sample weights the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accelnn.activations import ACTIVATIONS


@dataclass(frozen=True)
class Head:
    name: str
    loss_name: str
    activate: Callable[[Any, Any], None]
    loss_delta: Callable[..., Any]  # (xp, Z, Y, out[, v]) -> loss


def _sigmoid_loss_delta(xp, Z, Y, out, v=None):
    m = Z.shape[0]
    # BCE from logits: max(z, 0) - z y + log1p(exp(-|z|)).
    t = xp.log1p(xp.exp(-xp.abs(Z)))
    t += xp.maximum(Z, 0.0)
    t -= Z * Y
    loss = t.sum() / m if v is None else (t * v).sum()
    if out is not Z:
        out[...] = Z
    ACTIVATIONS["sigmoid"].forward(xp, out)
    out -= Y
    out *= 1.0 / m if v is None else v
    return loss


def _softmax_activate(xp, Z):
    Z -= Z.max(axis=1, keepdims=True)
    xp.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)


def _softmax_loss_delta(xp, Z, Y, out, v=None):
    m = Z.shape[0]
    xp.subtract(Z, Z.max(axis=1, keepdims=True), out=out)  # shifted logits s
    if v is None:
        ys = (Y * out).sum()
    else:
        ys = ((Y * out).sum(axis=1, keepdims=True) * v).sum()
    xp.exp(out, out=out)
    sumexp = out.sum(axis=1, keepdims=True)
    # CE = sum_i [lse_i - sum_k y_ik s_ik] / m, with sum_k y_ik = 1.
    if v is None:
        loss = (xp.log(sumexp).sum() - ys) / m
    else:
        loss = (xp.log(sumexp) * v).sum() - ys
    out /= sumexp
    out -= Y
    out *= 1.0 / m if v is None else v
    return loss


def _identity_activate(xp, Z):
    pass


def _identity_loss_delta(xp, Z, Y, out, v=None):
    m = Z.shape[0]
    xp.subtract(Z, Y, out=out)
    if v is None:
        loss = xp.vdot(out, out) / (2 * m)
        out *= 1.0 / m
    else:
        loss = (out * out * v).sum() / 2
        out *= v
    return loss


HEADS: dict[str, Head] = {
    h.name: h
    for h in (
        Head("sigmoid", "binary cross-entropy", ACTIVATIONS["sigmoid"].forward,
             _sigmoid_loss_delta),
        Head("softmax", "categorical cross-entropy", _softmax_activate, _softmax_loss_delta),
        Head("identity", "squared error", _identity_activate, _identity_loss_delta),
    )
}
ALIASES = {"logistic": "sigmoid", "linear": "identity", "binary_crossentropy": "sigmoid",
           "categorical_crossentropy": "softmax", "squared_error": "identity", "mse": "identity"}


def get_head(name: str) -> Head:
    """Look an output head up by name (or alias); raise ValueError naming the choices."""
    if not isinstance(name, str):
        raise TypeError(f"output must be a name, got {type(name).__name__}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in HEADS:
        choices = ", ".join(["auto"] + sorted(HEADS) + sorted(ALIASES))
        raise ValueError(f"unknown output {name!r}; choose one of: {choices}")
    return HEADS[key]
