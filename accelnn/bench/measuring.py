"""Measuring one subject: the timing of a phase (median and quartiles of synchronized samples)
and its agreement with a float64 NumPy reference (rel_err, the error measure the tests use
too)."""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from .configs import AGREEMENT_STEPS, Config, Inputs
from .subjects import ModelSubject


# ---------------------------------------------------------------------- timing
class Timing(NamedTuple):
    median_s: float
    q1_s: float
    q3_s: float
    calls: int
    samples: int


def time_once(fn, sync) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def measure(fn, sync, min_time: float, min_samples: int) -> Timing:
    """Time a warmed-up `fn`: samples of `number` calls each (number chosen so that a sample
    lasts at least min_time / 20), synchronized before each clock read, until min_time has
    passed and min_samples are taken."""
    one = time_once(fn, sync)
    number = max(1, math.ceil(min_time / 20 / max(one, 1e-9)))
    per_call = []
    start = time.perf_counter()
    while len(per_call) < min_samples or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        per_call.append((time.perf_counter() - t0) / number)
    q1, med, q3 = np.percentile(per_call, [25, 50, 75])
    return Timing(float(med), float(q1), float(q3), number * len(per_call), len(per_call))


# ---------------------------------------------------------------------- agreement
def rel_err(a, b) -> float:
    """max |a - b| / max |b|: the error relative to the reference's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _pairs_err(got, ref) -> float:
    return max(rel_err(x, r) for pg, pr in zip(got, ref) for x, r in zip(pg, pr))


def _flat(pairs) -> np.ndarray:
    return np.concatenate([np.ravel(a) for pair in pairs for a in pair])


def reference(config: Config, inputs: Inputs, phases) -> dict:
    """What `agreement` compares with, computed by the NumPy backend in float64: the forward
    output (predict); the loss, gradients and weights after AGREEMENT_STEPS steps (train_step)."""
    ref, out = ModelSubject("numpy", config, "float64", inputs), {}
    if "predict" in phases:
        out["forward"] = ref.forward()
    if set(phases) - {"predict"}:
        out["loss"], out["grads"] = ref.loss_and_grads()
        out["weights"] = ref.train(AGREEMENT_STEPS)
    return out


def agreement(subject, ref: dict, phase: str) -> dict:
    """Max relative error of each quantity of `phase` against the float64 reference: of each
    array for the forward output, the loss and every gradient; of all the weights together
    (their largest difference over the largest weight) after the training steps, since the
    biases start at 0."""
    if phase == "predict":
        return {"forward": rel_err(subject.forward(), ref["forward"])}
    loss, grads = subject.loss_and_grads()
    weights = subject.train(AGREEMENT_STEPS)
    return {"loss": rel_err(loss, ref["loss"]), "grads": _pairs_err(grads, ref["grads"]),
            f"weights_after_{AGREEMENT_STEPS}_steps": rel_err(_flat(weights),
                                                              _flat(ref["weights"]))}

