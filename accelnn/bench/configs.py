"""The benchmark's fixed settings (phases, dtypes, peers, error limits, learning rate), the
standard configurations with their GEMM shapes and FLOP counts, and the seeded inputs every
subject of a run starts from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

PHASES = ("predict", "train_step")
# What the recommendation weighs: the first of these phases the run measured, under the name it
# gives it ("numba, 1.12x numpy's train-step throughput"); a phase not listed here is weighed
# only when the run measured none of these.
RECOMMEND_BY = {"train_step": "train-step", "predict": "predict"}
DTYPES = ("float32", "float64")
PEERS = ("numpy-plain", "torch", "jax")
ERR_LIMITS = {"float64": 1e-12, "float32": 1e-5}
# The weights after AGREEMENT_STEPS steps: a float32 run of a ReLU net takes a slightly different
# path from the float64 one (units whose pre-activation lies within rounding of 0 switch
# sides), measured here up to 6e-5 on `wide` at lr 0.01 (3e-7 with tanh units); a wrong update
# is off by the size of the update itself, 1e-2 and more.
WEIGHTS_LIMITS = {"float64": 1e-12, "float32": 1e-3}
LR = 0.01
AGREEMENT_STEPS = 10
SCHEMA = 1


class BenchError(ValueError):
    """Bad benchmark options: an unknown name, an unreadable file, a missing optional package."""


class Gemm(NamedTuple):
    """C (m, n) = op(A) @ op(B) with inner size k. kind: "nn" Z = A @ W, "tn" dW = A.T @ dZ,
    "nt" dA = dZ @ W.T (A and W stored as the model stores them)."""

    kind: str
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


@dataclass(frozen=True)
class Config:
    name: str
    layers: tuple[int, ...]
    hidden: str
    output: str
    batch: int
    data: str  # "flower" (the planar two-class set) or "gaussian" (random features and labels)

    def gemms(self, phase: str) -> list[Gemm]:
        """The GEMMs one call of `phase` performs, as the model performs them."""
        m, pairs = self.batch, list(zip(self.layers, self.layers[1:]))
        out = [Gemm("nn", m, n_in, n_out) for n_in, n_out in pairs]
        if phase == "train_step":
            out += [Gemm("tn", n_in, m, n_out) for n_in, n_out in pairs]
            out += [Gemm("nt", m, n_out, n_in) for n_in, n_out in pairs[1:]]
        return out

    def flops(self, phase: str) -> int:
        return sum(g.flops for g in self.gemms(phase))


CONFIGS = {c.name: c for c in (
    Config("seed", (2, 4, 1), "tanh", "sigmoid", 400, "flower"),
    Config("mnist", (784, 256, 10), "relu", "softmax", 128, "gaussian"),
    Config("wide", (1024, 2048, 2048, 10), "relu", "softmax", 512, "gaussian"),
    Config("deep", (64, 128, 128, 128, 128, 128, 128, 10), "relu", "softmax", 32, "gaussian"),
)}


# ---------------------------------------------------------------------- data
def gemm_operands(g: Gemm) -> tuple[np.ndarray, np.ndarray]:
    """Random host operands of `g`, stored as the model stores them (A of "tn" as (k, m), B of
    "nt" as (n, k)); the caller transposes those two."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal((g.k, g.m) if g.kind == "tn" else (g.m, g.k)),
            rng.standard_normal((g.n, g.k) if g.kind == "nt" else (g.k, g.n)))


class Inputs(NamedTuple):
    X: np.ndarray  # (m, n0) float64 holding values exact in the dtype
    y: np.ndarray  # (m,) integer labels
    weights: list  # [(W, b), ...] float64 holding values exact in the dtype


def make_inputs(config: Config, dtype: str, seed: int = 0) -> Inputs:
    """Seeded synthetic data and initial weights, rounded to `dtype` so that a float32 backend
    and the float64 reference start from identical numbers."""
    from accelnn import MLP, datasets

    m, n0, n_out = config.batch, config.layers[0], config.layers[-1]
    if config.data == "flower":
        X, y = datasets.make_flower(m, seed=seed)
    else:
        rng = np.random.default_rng(seed)
        X, y = rng.standard_normal((m, n0)), rng.integers(0, max(n_out, 2), m)
    init = MLP(config.layers, config.hidden, config.output, seed=seed, dtype="float64",
               backend="numpy").get_weights()

    def rounded(a):  # read-only: shared by every subject of a run
        a = a.astype(dtype).astype(np.float64)
        a.setflags(write=False)
        return a

    y.setflags(write=False)
    return Inputs(rounded(X), y, [(rounded(W), rounded(b)) for W, b in init])

