"""The benchmark's fixed settings (phases, dtypes, peers, error limits, learning rates), the
standard configurations with their GEMM shapes and FLOP counts, and the seeded inputs every
subject of a run starts from.

Phases: `predict` (class labels of `predict_rows` rows: what MLP.predict gives), `train_step`
(one SGD step on a batch) and `fit_epoch` (mini-batch Adam through the public `fit` over a data
set of `fit_rows` rows, `fit_epochs` epochs per call: what users run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

PHASES = ("predict", "train_step", "fit_epoch")
# What the recommendation weighs: the first of these phases the run measured, under the name it
# gives it ("numba, 1.12x numpy's train-step throughput"); a phase not listed here is weighed
# only when the run measured none of these.
RECOMMEND_BY = {"train_step": "train-step", "predict": "predict"}
DTYPES = ("float32", "float64")
PEERS = ("numpy-plain", "torch", "jax", "sklearn")
ERR_LIMITS = {"float64": 1e-12, "float32": 1e-5}
# The weights after AGREEMENT_STEPS steps: a float32 run of a ReLU net takes a slightly different
# path from the float64 one (units whose pre-activation lies within rounding of 0 switch
# sides), measured here up to 6e-5 on `wide` at lr 0.01 (3e-7 with tanh units); a wrong update
# is off by the size of the update itself, 1e-2 and more.
WEIGHTS_LIMITS = {"float64": 1e-12, "float32": 1e-3}
LR = 0.01
FIT_LR = 0.001  # Adam's, in the fit_epoch phase
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
    predict_rows: int = 0  # rows of the predict phase (0: the batch)
    fit_rows: int = 0  # rows of the fit_epoch phase's data set (0: the batch)
    fit_epochs: int = 1  # epochs per call of fit_epoch

    def rows(self, phase: str) -> int:
        """The rows one call of `phase` processes (all epochs of a fit)."""
        if phase == "predict":
            return self.predict_rows or self.batch
        if phase == "fit_epoch":
            return (self.fit_rows or self.batch) * self.fit_epochs
        return self.batch

    def gemms(self, phase: str) -> list[Gemm]:
        """The GEMMs one call of `phase` performs, as the model performs them."""
        pairs = list(zip(self.layers, self.layers[1:]))
        if phase == "predict":
            return [Gemm("nn", self.rows(phase), n_in, n_out) for n_in, n_out in pairs]
        if phase == "fit_epoch":
            n = self.fit_rows or self.batch
            sizes = [self.batch] * (n // self.batch) + ([n % self.batch] if n % self.batch else [])
            return [g for m in sizes for g in self._step_gemms(m)] * self.fit_epochs
        return self._step_gemms(self.batch)

    def _step_gemms(self, m: int) -> list[Gemm]:
        pairs = list(zip(self.layers, self.layers[1:]))
        return ([Gemm("nn", m, n_in, n_out) for n_in, n_out in pairs]
                + [Gemm("tn", n_in, m, n_out) for n_in, n_out in pairs]
                + [Gemm("nt", m, n_out, n_in) for n_in, n_out in pairs[1:]])

    def flops(self, phase: str) -> int:
        return sum(g.flops for g in self.gemms(phase))

    def largest_gemm(self, phase: str) -> int:
        """The multiply-adds of the largest GEMM one call of `phase` performs: what the BLAS
        thread policy (accelnn.machine.BLAS_THREADS) decides a phase's threads by."""
        return max(g.m * g.k * g.n for g in self.gemms(phase))


CONFIGS = {c.name: c for c in (
    Config("seed", (2, 4, 1), "tanh", "sigmoid", 400, "flower"),
    Config("mnist", (784, 256, 10), "relu", "softmax", 128, "gaussian", predict_rows=1000,
           fit_rows=60_000),
    Config("wide", (1024, 2048, 2048, 10), "relu", "softmax", 512, "gaussian", fit_rows=2048),
    Config("deep", (64, 128, 128, 128, 128, 128, 128, 10), "relu", "softmax", 32, "gaussian",
           fit_rows=10_000),
    Config("tabular", (20, 64, 64, 2), "relu", "softmax", 32, "gaussian", fit_rows=5_000,
           fit_epochs=20),
)}


# ---------------------------------------------------------------------- data
def gemm_operands(g: Gemm) -> tuple[np.ndarray, np.ndarray]:
    """Random host operands of `g`, stored as the model stores them (A of "tn" as (k, m), B of
    "nt" as (n, k)); the caller transposes those two."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal((g.k, g.m) if g.kind == "tn" else (g.m, g.k)),
            rng.standard_normal((g.n, g.k) if g.kind == "nt" else (g.k, g.n)))


class Inputs(NamedTuple):
    X: np.ndarray  # (m, n0) float64 holding values exact in the dtype: a batch
    y: np.ndarray  # (m,) integer labels
    weights: list  # [(W, b), ...] float64 holding values exact in the dtype
    Xp: np.ndarray  # (predict_rows, n0) float64, the rows of the predict phase
    fit: tuple | None  # (X in the dtype, y) of the fit_epoch phase, or None when not asked for


def _data(config: Config, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from accelnn import datasets

    if config.data == "flower":
        return datasets.make_flower(m, seed=seed)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, config.layers[0])),
            rng.integers(0, max(config.layers[-1], 2), m))


def make_inputs(config: Config, dtype: str, seed: int = 0, fit: bool = True) -> Inputs:
    """Seeded synthetic data and initial weights, rounded to `dtype` so that a float32 backend
    and the float64 reference start from identical numbers; the fit_epoch phase's data set
    (in `dtype`) only when `fit`."""
    from accelnn import MLP

    X, y = _data(config, config.batch, seed)
    Xp = _data(config, config.rows("predict"), seed)[0] if config.predict_rows else X
    init = MLP(config.layers, config.hidden, config.output, seed=seed, dtype="float64",
               backend="numpy").get_weights()

    def rounded(a, to=np.float64):  # read-only: shared by every subject of a run
        a = a.astype(dtype).astype(to, copy=False)
        a.setflags(write=False)
        return a

    y.setflags(write=False)
    data = None
    if fit:
        Xf, yf = _data(config, config.fit_rows or config.batch, seed + 1)
        yf.setflags(write=False)
        data = (rounded(Xf, dtype), yf)
    return Inputs(rounded(X), y, [(rounded(W), rounded(b)) for W, b in init], rounded(Xp),
                  data)

