"""Benchmarks: throughput and numerical agreement of every backend, side by side.

`accelnn bench` answers "which backend should I use on this machine, how much faster is it, and
do the numbers agree?" over the standard configurations of DESIGN.md section 5:

    seed   [2, 4, 1]                          tanh / sigmoid   full batch of 400 (flower data)
    mnist  [784, 256, 10]                     relu / softmax   batch 128
    wide   [1024, 2048, 2048, 10]             relu / softmax   batch 512
    deep   [64, 128 x 6, 10]                  relu / softmax   batch 32

Phases, each on data already on the backend's device:

    predict     model.forward(X): the forward pass to the output probabilities
    train_step  one SGD step of model.step_function(X, y): forward, backward and update

Timing: the first call (JIT compilation, workspace allocation) is timed alone; `compile_s` is
that first call minus a steady call. Kernels are compiled once per process and dtype (and cached
on disk by Numba), so compile time shows on the first configuration that needs them. Then calls
are grouped into samples of at least `min_time / 20`, the device synchronized before each clock
read, until `min_time` has passed and at least `min_samples` samples are taken; the median time
per call and its interquartile range (IQR) are reported.

FLOPs count the GEMMs only (bias, activations and the update are a small extra), exactly:
predict 2 m sum(n_in n_out); a train step adds dW = A_prev.T @ dZ for every layer and
dA_prev = dZ @ W.T for every layer but the first, 2 m (3 sum(n_in n_out) - n_0 n_1) in all.
`gemm_fraction` is the achieved GFLOP/s over the rate of the backend's own matmul on exactly the
phase's GEMM shapes, measured in the same run: 1.0 means the phase runs at GEMM speed.

Agreement, in the same run: every backend starts from the same weights and data (rounded to its
dtype) as a float64 NumPy reference. `max_rel_err` is the largest max |a - b| / max |b| of the
forward output (predict rows) or of the loss and every gradient array (train_step rows), with
the limits of DESIGN.md section 4: 1e-12 in float64, 1e-5 in float32. `weights_rel_err` is that
of all the weights together after 10 training steps, limits 1e-12 and 1e-3 (WEIGHTS_LIMITS says
why float32 needs more). Rows beyond a limit are flagged, not hidden.

Peers: PyTorch (eager, torch.optim.SGD) and JAX (jitted) run the same network as extra rows
marked peer, when they import; they are never a dependency.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

PHASES = ("predict", "train_step")
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


# ---------------------------------------------------------------------- data and subjects
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


class ModelSubject:
    """An accelnn MLP on one backend: what the runner times and checks. Peers mirror it."""

    peer = False

    def __init__(self, name: str, config: Config, dtype: str, inputs: Inputs):
        from accelnn import MLP, get_backend

        self.name, self.inputs = name, inputs
        self.backend = get_backend(name)
        self.device = str(self.backend.device)
        self.model = MLP(config.layers, config.hidden, config.output, dtype=dtype,
                         backend=self.backend)
        self.model.set_weights(inputs.weights)

    def synchronize(self) -> None:
        self.backend.synchronize()

    def phase(self, phase: str):
        """The callable that runs one `phase` (building it is part of the first call)."""
        if phase == "predict":
            X = self.backend.asarray(self.inputs.X, self.model.dtype)
            return lambda: self.model.forward(X)
        return self.model.step_function(self.inputs.X, self.inputs.y, lr=LR)

    def forward(self) -> np.ndarray:
        self.model.set_weights(self.inputs.weights)
        return self.backend.to_numpy(self.model.forward(self.inputs.X))

    def loss_and_grads(self):
        self.model.set_weights(self.inputs.weights)
        return self.model.loss_and_grads(self.inputs.X, self.inputs.y)

    def train(self, steps: int):
        self.model.set_weights(self.inputs.weights)
        step = self.model.step_function(self.inputs.X, self.inputs.y, lr=LR)
        for _ in range(steps):
            step()
        return self.model.get_weights()

    def gemm(self, g: Gemm):
        be, dt = self.backend, self.model.dtype
        a, b = (be.asarray(x, dt) for x in gemm_operands(g))
        a, b = (a.T if g.kind == "tn" else a), (b.T if g.kind == "nt" else b)
        out = be.empty((g.m, g.n), dt)
        return lambda: be.matmul(a, b, out)


class TorchSubject:
    """The same network in eager PyTorch: torch.nn.functional, autograd, torch.optim.SGD."""

    peer = True
    name = "torch"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        import torch

        self.torch, self.config = torch, config
        self.dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.device = str(self.dev) if self.dev.type == "cuda" else \
            f"cpu, {torch.get_num_threads()} threads"
        self.dtype = getattr(torch, dtype)
        self.inputs = inputs
        self.X = self._tensor(inputs.X)
        if config.output == "softmax":
            self.Y = torch.tensor(inputs.y, dtype=torch.long, device=self.dev)
        else:
            self.Y = self._tensor(inputs.y.reshape(-1, 1))
        self.act = getattr(torch, config.hidden)

    def _tensor(self, a):
        return self.torch.tensor(a, dtype=self.dtype, device=self.dev)  # a copy

    def _params(self):
        return [self._tensor(p).requires_grad_() for pair in self.inputs.weights for p in pair]

    def _logits(self, params):
        A = self.X
        for l in range(0, len(params), 2):
            Z = self.torch.addmm(params[l + 1], A, params[l])
            A = self.act(Z)
        return Z

    def _loss(self, Z):
        F = self.torch.nn.functional
        if self.config.output == "softmax":
            return F.cross_entropy(Z, self.Y)
        return F.binary_cross_entropy_with_logits(Z, self.Y, reduction="sum") / Z.shape[0]

    def _output(self, Z):
        return self.torch.softmax(Z, 1) if self.config.output == "softmax" else \
            self.torch.sigmoid(Z)

    def synchronize(self) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def phase(self, phase: str):
        params = self._params()
        if phase == "predict":
            def predict():
                with self.torch.inference_mode():
                    return self._output(self._logits(params))
            return predict
        return self._sgd_step(params)

    def _sgd_step(self, params):
        opt = self.torch.optim.SGD(params, lr=LR)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = self._loss(self._logits(params))
            loss.backward()
            opt.step()
            return loss
        return step

    def _host(self, tensors):
        host = [t.detach().cpu().double().numpy() for t in tensors]
        return list(zip(host[0::2], host[1::2]))

    def forward(self) -> np.ndarray:
        with self.torch.inference_mode():
            return self._output(self._logits(self._params())).cpu().double().numpy()

    def loss_and_grads(self):
        params = self._params()
        loss = self._loss(self._logits(params))
        return float(loss.detach()), self._host(self.torch.autograd.grad(loss, params))

    def train(self, steps: int):
        params = self._params()
        step = self._sgd_step(params)
        for _ in range(steps):
            step()
        return self._host(params)

    def gemm(self, g: Gemm):
        a, b = (self._tensor(x) for x in gemm_operands(g))
        a, b = (a.T if g.kind == "tn" else a), (b.T if g.kind == "nt" else b)
        out = self.torch.empty((g.m, g.n), dtype=self.dtype, device=self.dev)
        return lambda: self.torch.matmul(a, b, out=out)


class JaxSubject:
    """The same network in JAX: jax.jit of the forward pass and of a value_and_grad SGD step."""

    peer = True
    name = "jax"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 arrays; float32 ones are unchanged
        import jax.numpy as jnp

        self.jax, self.jnp, self.inputs = jax, jnp, inputs
        self.dtype = jnp.dtype(dtype)
        self.device = str(jax.devices()[0])
        self.X = jnp.asarray(inputs.X, self.dtype)
        n_out = config.layers[-1]
        Y = np.eye(n_out)[inputs.y] if config.output == "softmax" else inputs.y.reshape(-1, 1)
        Y = jnp.asarray(Y, self.dtype)
        act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[config.hidden]
        softmax = config.output == "softmax"

        def logits(params, X):
            A = X
            for W, b in params:
                Z = A @ W + b
                A = act(Z)
            return Z

        def loss(params):
            Z = logits(params, self.X)
            if softmax:
                return -(Y * jax.nn.log_softmax(Z)).sum() / Z.shape[0]
            return (jnp.logaddexp(0.0, Z) - Z * Y).sum() / Z.shape[0]

        def step(params):
            value, grads = jax.value_and_grad(loss)(params)
            return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

        self._output = jax.jit(lambda p, X: (jax.nn.softmax if softmax else jax.nn.sigmoid)(
            logits(p, X)))
        self._loss_and_grads = jax.jit(jax.value_and_grad(loss))
        self._step = jax.jit(step)
        self._last = None

    def _params(self):
        return [(self.jnp.asarray(W, self.dtype), self.jnp.asarray(b, self.dtype))
                for W, b in self.inputs.weights]

    def synchronize(self) -> None:
        if self._last is not None:
            self.jax.block_until_ready(self._last)

    def phase(self, phase: str):
        params = [self._params()]
        if phase == "predict":
            def predict():
                self._last = self._output(params[0], self.X)
            return predict

        def step():
            loss, params[0] = self._step(params[0])
            self._last = params[0]
            return loss
        return step

    def _host(self, params):
        return [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params]

    def forward(self) -> np.ndarray:
        return np.asarray(self._output(self._params(), self.X), np.float64)

    def loss_and_grads(self):
        loss, grads = self._loss_and_grads(self._params())
        return float(loss), self._host(grads)

    def train(self, steps: int):
        params = self._params()
        for _ in range(steps):
            params = self._step(params)[1]
        return self._host(params)

    def gemm(self, g: Gemm):
        a, b = (self.jnp.asarray(x, self.dtype) for x in gemm_operands(g))
        f = self.jax.jit(lambda a, b: (a.T if g.kind == "tn" else a) @
                         (b.T if g.kind == "nt" else b))

        def call():
            self._last = f(a, b)
        return call


class PlainNumpySubject:
    """The same network as a straightforward NumPy transcription of the classic equations:
    fresh arrays every step, no reused buffers, no in-place work. It is the baseline the NumPy
    backend must match or beat."""

    peer = True
    name = "numpy-plain"
    device = "cpu"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        self.config, self.inputs, self.dtype = config, inputs, np.dtype(dtype)
        self.X = inputs.X.astype(self.dtype)
        n_out = config.layers[-1]
        Y = np.eye(n_out)[inputs.y] if config.output == "softmax" else inputs.y.reshape(-1, 1)
        self.Y = Y.astype(self.dtype)
        self.lr = self.dtype.type(LR)

    def _params(self):
        return [p.astype(self.dtype) for pair in self.inputs.weights for p in pair]

    def _activations(self, P):
        As = [self.X]
        for l in range(0, len(P), 2):
            Z = As[-1] @ P[l] + P[l + 1]
            if l + 2 < len(P):
                As.append(np.tanh(Z) if self.config.hidden == "tanh" else np.maximum(Z, 0))
            elif self.config.output == "softmax":
                E = np.exp(Z - Z.max(axis=1, keepdims=True))
                As.append(E / E.sum(axis=1, keepdims=True))
            else:
                As.append(1 / (1 + np.exp(-Z)))
        return As

    def _loss_and_grads(self, P):
        As = self._activations(P)
        A, Y, m = As[-1], self.Y, self.X.shape[0]
        if self.config.output == "softmax":
            loss = -np.sum(Y * np.log(A)) / m
        else:
            loss = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
        dZ = (A - Y) / m
        grads = [None] * len(P)
        for l in range(len(P) - 2, -1, -2):
            A_prev = As[l // 2]
            grads[l], grads[l + 1] = A_prev.T @ dZ, dZ.sum(axis=0)
            if l:
                dg = 1 - A_prev**2 if self.config.hidden == "tanh" else A_prev > 0
                dZ = (dZ @ P[l].T) * dg
        return loss, grads

    def _step(self, P):
        def step():
            loss, grads = self._loss_and_grads(P)
            for p, g in zip(P, grads):
                p -= self.lr * g
            return loss
        return step

    def synchronize(self) -> None:
        pass

    def phase(self, phase: str):
        P = self._params()
        return (lambda: self._activations(P)[-1]) if phase == "predict" else self._step(P)

    def forward(self) -> np.ndarray:
        return self._activations(self._params())[-1]

    def loss_and_grads(self):
        loss, grads = self._loss_and_grads(self._params())
        return float(loss), list(zip(grads[0::2], grads[1::2]))

    def train(self, steps: int):
        P = self._params()
        step = self._step(P)
        for _ in range(steps):
            step()
        return list(zip(P[0::2], P[1::2]))

    def gemm(self, g: Gemm):
        a, b = (x.astype(self.dtype) for x in gemm_operands(g))
        a, b = (a.T if g.kind == "tn" else a), (b.T if g.kind == "nt" else b)
        return lambda: a @ b


PEER_CLASSES = {"numpy-plain": PlainNumpySubject, "torch": TorchSubject, "jax": JaxSubject}


def backend_names() -> list[str]:
    """Every name `--backends` accepts: the registered accelnn backends, then the peers."""
    from accelnn import available_backends

    return [*available_backends(), *PEERS]


def unavailable_reason(name: str) -> str | None:
    """None when `name` can run here, else why not (as `accelnn info` says it)."""
    if name == "numpy-plain":
        return None
    if name in PEERS:
        return None if importlib.util.find_spec(name) else \
            f"not installed (a peer for comparison, never a dependency: pip install {name})"
    from accelnn import available_backends

    status = available_backends()[name]
    return None if status.available else status.reason


def make_subject(name: str, config: Config, dtype: str, inputs: Inputs):
    """The network of `config` on backend or peer `name`, from `inputs`."""
    if name in PEER_CLASSES:
        return PEER_CLASSES[name](config, dtype, inputs)
    return ModelSubject(name, config, dtype, inputs)


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
    if "train_step" in phases:
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


# ---------------------------------------------------------------------- the runner
class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent when piped."""

    def __init__(self, total: int, stream=None):
        self.total, self.done = total, 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = total > 0 and self.stream.isatty()

    def show(self, label: str) -> None:
        if self.enabled:
            filled = 30 * self.done // self.total
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] "
                              f"{self.done}/{self.total} {label:<40.40}")
            self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.done += n

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def parse_names(value, valid, what: str) -> list[str]:
    """A comma-separated string or list of names, each checked against `valid` (BenchError
    listing the valid ones otherwise); None means all of them."""
    if value is None:
        return list(valid)
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip().lower() for n in names if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise BenchError(f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; "
                         f"choose from: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def run(configs=None, backends=None, dtypes=None, phases=None, *, quick: bool = False,
        min_time: float | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Run the benchmark matrix and return the report (the JSON document).

    configs, backends, dtypes, phases: names (lists or comma-separated), default all; backends
    include the peers torch and jax. Unknown names raise BenchError; backends that cannot run
    here are listed under "skipped" with the reason. quick: min_time 0.05 s and 3 samples a row
    (CI), else 0.5 s and 5. A backend that raises is reported in its rows as failed."""
    configs = [CONFIGS[n] for n in parse_names(configs, list(CONFIGS), "config")]
    names = parse_names(backends, backend_names(), "backend")
    dtypes = parse_names(dtypes, list(DTYPES), "dtype")
    phases = parse_names(phases, list(PHASES), "phase")
    min_time = (0.05 if quick else 0.5) if min_time is None else float(min_time)
    if not min_time > 0:
        raise BenchError(f"min_time must be > 0 seconds, got {min_time}")
    min_samples = 3 if quick else 5
    skipped = {n: r for n in names if (r := unavailable_reason(n)) is not None}
    runnable = [n for n in names if n not in skipped]

    records, gemm_rates = [], []
    bar = Progress(len(configs) * len(dtypes) * len(runnable) * len(phases)
                   if progress else 0)
    for config in configs:
        for dtype in dtypes:
            inputs = make_inputs(config, dtype, seed)
            try:
                ref, ref_error = reference(config, inputs, phases), None
            except Exception as exc:
                ref, ref_error = None, f"reference failed: {_error_text(exc)}"
            for name in runnable:
                bar.show(f"{config.name} {dtype} {name}")
                rows, gemm = _bench_subject(name, config, dtype, inputs, phases, ref,
                                            ref_error, min_time, min_samples)
                records += rows
                if gemm:
                    gemm_rates.append(gemm)
                bar.advance(len(phases))
    bar.close()
    _add_speedups(records)
    from accelnn.machine import machine_info

    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"configs": [c.name for c in configs], "backends": names,
                     "dtypes": dtypes, "phases": phases, "quick": quick, "min_time_s": min_time,
                     "min_samples": min_samples, "seed": seed, "lr": LR,
                     "agreement_steps": AGREEMENT_STEPS, "err_limits": ERR_LIMITS,
                     "weights_limits": WEIGHTS_LIMITS},
        "machine": {**machine_info(), "backends": _backend_infos(runnable)},
        "skipped": [{"backend": n, "reason": r} for n, r in skipped.items()],
        "records": records,
        "gemm": gemm_rates,
    }


def _bench_subject(name, config, dtype, inputs, phases, ref, ref_error, min_time,
                   min_samples):
    """The rows of one backend on one (config, dtype), and its GEMM rates. Every step is
    guarded: what raises marks the rows failed with the error, the rest is kept."""
    measured = dict.fromkeys(("device", "error", "median_s", "q1_s", "q3_s", "iqr_s", "calls",
                              "samples_per_s", "gflops", "gemm_gflops", "gemm_fraction",
                              "compile_s", "max_rel_err", "weights_rel_err", "within_limit",
                              "errors", "speedup_vs_numpy"))
    rows = {p: {"config": config.name, "phase": p, "backend": name, "dtype": dtype,
                "peer": name in PEERS, "batch": config.batch, "layers": list(config.layers),
                "gflop": config.flops(p) / 1e9, "err_limit": ERR_LIMITS[dtype],
                "weights_err_limit": WEIGHTS_LIMITS[dtype], "status": "ok", **measured}
            for p in phases}

    def fail(row, exc):
        row["status"], row["error"] = "failed", _error_text(exc)

    try:
        subject = make_subject(name, config, dtype, inputs)
    except Exception as exc:
        for row in rows.values():
            fail(row, exc)
        return list(rows.values()), None

    first = {}
    for p in phases:  # first calls before anything else runs on this subject: compile time
        rows[p]["device"] = subject.device
        try:
            t0 = time.perf_counter()
            fn = subject.phase(p)
            fn()
            subject.synchronize()
            first[p] = fn, time.perf_counter() - t0
        except Exception as exc:
            fail(rows[p], exc)

    shapes = list(dict.fromkeys(g for p in phases for g in config.gemms(p)))
    seconds = {}  # GEMM -> median seconds of one call of the backend's matmul

    def gemm_seconds(g: Gemm) -> float:
        if g not in seconds:
            seconds[g] = measure(subject.gemm(g), subject.synchronize, min_time / len(shapes),
                                 min_samples).median_s
        return seconds[g]

    for p, (fn, first_s) in first.items():
        row, flops = rows[p], config.flops(p)
        try:
            t = measure(fn, subject.synchronize, min_time, min_samples)
            row.update(median_s=t.median_s, q1_s=t.q1_s, q3_s=t.q3_s, iqr_s=t.q3_s - t.q1_s,
                       calls=t.calls, samples_per_s=config.batch / t.median_s,
                       gflops=flops / t.median_s / 1e9,
                       compile_s=max(0.0, first_s - t.median_s))
            rate = flops / sum(gemm_seconds(g) for g in config.gemms(p)) / 1e9
            row.update(gemm_gflops=rate, gemm_fraction=row["gflops"] / rate)
            if ref is None:
                raise RuntimeError(ref_error)
            errors = agreement(subject, ref, p)
            if p == "predict":
                row["max_rel_err"] = errors["forward"]
            else:
                row["max_rel_err"] = max(errors["loss"], errors["grads"])
                row["weights_rel_err"] = errors[f"weights_after_{AGREEMENT_STEPS}_steps"]
            row.update(errors=errors, within_limit=row["max_rel_err"] <= ERR_LIMITS[dtype]
                       and (row["weights_rel_err"] or 0.0) <= WEIGHTS_LIMITS[dtype])
        except Exception as exc:
            fail(row, exc)
    gemm = {"config": config.name, "backend": name, "dtype": dtype, "device": subject.device,
            "shapes": [{**g._asdict(), "median_s": s, "gflops": g.flops / s / 1e9}
                       for g, s in seconds.items()]} if seconds else None
    return list(rows.values()), gemm


def _add_speedups(records) -> None:
    base = {(r["config"], r["phase"], r["dtype"]): r["samples_per_s"] for r in records
            if r["backend"] == "numpy" and r["samples_per_s"]}
    for r in records:
        ref = base.get((r["config"], r["phase"], r["dtype"]))
        if ref and r["samples_per_s"]:
            r["speedup_vs_numpy"] = r["samples_per_s"] / ref


def _backend_infos(names) -> dict:
    from accelnn import get_backend

    infos = {}
    for name in names:
        try:
            if name in PEERS:
                mod = importlib.import_module(name)
                infos[name] = {"version": getattr(mod, "__version__", None), "peer": True}
            else:
                infos[name] = {k: str(v) for k, v in get_backend(name).info().items()}
        except Exception as exc:
            infos[name] = {"error": _error_text(exc)}
    return infos


# ---------------------------------------------------------------------- comparing and reporting
def _key(r) -> tuple:
    return r["config"], r["phase"], r["backend"], r["dtype"]


def compare(report: dict, old: dict, threshold: float = 0.10) -> dict:
    """Samples/s of each row over the same row of an earlier report; a ratio below
    1 - threshold is flagged as a regression."""
    before = {_key(r): r for r in old.get("records", []) if r.get("samples_per_s")}
    rows = []
    for r in report["records"]:
        o = before.get(_key(r))
        if o is None or not r["samples_per_s"]:
            continue
        ratio = r["samples_per_s"] / o["samples_per_s"]
        rows.append({"config": r["config"], "phase": r["phase"], "backend": r["backend"],
                     "dtype": r["dtype"], "old_samples_per_s": o["samples_per_s"],
                     "samples_per_s": r["samples_per_s"], "ratio": ratio,
                     "regression": ratio < 1.0 - threshold})
    return {"threshold": threshold, "old_created": old.get("created"), "rows": rows}


def _fmt_time(s) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _fmt_count(x) -> str:
    if x is None:
        return "-"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _fmt(x, spec: str, suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def _check(r) -> str:
    if r["status"] != "ok":
        return f"FAILED: {r['error'][:80]}"
    if r["within_limit"] is False:  # a peer's own rounding: reported, not accelnn's failure
        return "peer's error beyond the limit" if r["peer"] else "ERROR BEYOND LIMIT"
    if r["iqr_s"] is not None and r["iqr_s"] > 0.5 * r["median_s"]:
        return "ok, noisy timing"  # the machine was busy: rerun before trusting the speed
    return "ok"


def _machine_line(m: dict) -> str:
    blas = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} (kernel {b.get('architecture')}, "
        f"{b.get('num_threads')} threads)" if "error" not in b else b["error"]
        for b in m.get("blas", [])) or "unknown"
    gpus = [f"{n}: {i.get('gpu', i.get('device'))}" for n, i in m.get("backends", {}).items()
            if i.get("device") not in (None, "cpu")]
    versions = ", ".join(f"{k} {m.get(k) or '-'}" for k in ("python", "numpy", "numba", "cupy"))
    return (f"{m.get('cpu')}, {m.get('cores')} cores; BLAS {blas}; "
            f"GPU {', '.join(gpus) or 'none'}; {versions}")


def to_markdown(report: dict) -> str:
    """The report as Markdown: a header, one table row per record, skipped backends and, when
    the report was compared with an earlier one, the ratios."""
    s = report["settings"]
    lines = [
        "# accelnn bench",
        "",
        f"Machine: {_machine_line(report['machine'])}",
        "",
        f"{'quick' if s['quick'] else 'full'} run, {report['created']}: median of samples "
        f"after warm-up, at least {s['min_time_s']} s per row; GFLOP/s counts GEMM FLOPs; "
        f"errors vs a float64 NumPy reference on the same weights and data: max rel err of "
        f"the output (predict) or loss and gradients (train_step), limits float64 "
        f"{s['err_limits']['float64']:.0e}, float32 {s['err_limits']['float32']:.0e}; "
        f"10-step err of the weights after {s['agreement_steps']} steps, limits "
        f"{s['weights_limits']['float64']:.0e} and {s['weights_limits']['float32']:.0e}.",
        "",
        "| config | phase | dtype | backend | batch | median | IQR | samples/s | vs numpy "
        "| GFLOP/s | GEMM frac | compile s | max rel err | 10-step err | check |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    order = {n: i for i, n in enumerate(s["backends"])}
    for r in sorted(report["records"], key=lambda r: (
            s["configs"].index(r["config"]), s["phases"].index(r["phase"]),
            s["dtypes"].index(r["dtype"]), order.get(r["backend"], len(order)))):
        backend = f"{r['backend']} (peer)" if r["peer"] else r["backend"]
        lines.append(
            f"| {r['config']} | {r['phase']} | {r['dtype']} | {backend} | {r['batch']} "
            f"| {_fmt_time(r['median_s'])} | {_fmt_time(r['iqr_s'])} "
            f"| {_fmt_count(r['samples_per_s'])} | {_fmt(r['speedup_vs_numpy'], '.2f', 'x')} "
            f"| {_fmt(r['gflops'], '.3g')} | {_fmt(r['gemm_fraction'], '.2f')} "
            f"| {_fmt(r['compile_s'], '.3f')} | {_fmt(r['max_rel_err'], '.1e')} "
            f"| {_fmt(r['weights_rel_err'], '.1e')} | {_check(r)} |")
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k['backend']} ({k['reason']})"
                                              for k in report["skipped"])]
    cmp = report.get("compare")
    if cmp:
        lines += ["", f"## Compared with the run of {cmp['old_created']} (regression: "
                      f"below {1 - cmp['threshold']:.2f}x)", "",
                  "| config | phase | dtype | backend | old samples/s | samples/s | ratio | |",
                  "|---|---|---|---|---:|---:|---:|---|"]
        for c in cmp["rows"]:
            lines.append(f"| {c['config']} | {c['phase']} | {c['dtype']} | {c['backend']} "
                         f"| {_fmt_count(c['old_samples_per_s'])} "
                         f"| {_fmt_count(c['samples_per_s'])} | {c['ratio']:.2f}x "
                         f"| {'REGRESSION' if c['regression'] else ''} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path) -> None:
    """A PNG bar chart of samples/s (log scale): one panel per (phase, dtype), configs along x,
    one bar per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["settings"]
    ok = [r for r in report["records"] if r["samples_per_s"]]
    backends = [b for b in s["backends"] if any(r["backend"] == b for r in ok)]
    fig, axes = plt.subplots(len(s["phases"]), len(s["dtypes"]), squeeze=False,
                             figsize=(4.5 * len(s["dtypes"]), 3.5 * len(s["phases"])))
    width = 0.8 / max(len(backends), 1)
    for i, phase in enumerate(s["phases"]):
        for j, dtype in enumerate(s["dtypes"]):
            ax = axes[i][j]
            for k, b in enumerate(backends):
                got = {r["config"]: r["samples_per_s"] for r in ok
                       if (r["phase"], r["dtype"], r["backend"]) == (phase, dtype, b)}
                xs = [x + k * width for x, c in enumerate(s["configs"]) if c in got]
                ax.bar(xs, [got[c] for c in s["configs"] if c in got], width, label=b)
            ax.set_xticks([x + width * (len(backends) - 1) / 2
                           for x in range(len(s["configs"]))], s["configs"])
            ax.set_yscale("log")
            ax.set_title(f"{phase}, {dtype}")
            ax.set_ylabel("samples/s")
    axes[0][0].legend()
    fig.suptitle(f"accelnn bench: {report['machine'].get('cpu')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `accelnn bench`."""
    parser.description = ("Throughput (median samples/s, GFLOP/s, fraction of the GEMM rate, "
                          "JIT compile time) and numerical agreement with a float64 NumPy "
                          "reference, of every backend on the standard configurations.")
    parser.epilog = ("Exit status: 0; 1 when an accelnn backend's row failed or is beyond its "
                     "error limit (peers are reported, not judged) or --compare found a "
                     "regression; 2 for unknown names or bad options.")
    parser.add_argument("--configs", help=f"comma-separated, from {', '.join(CONFIGS)} "
                                          "(default: all)")
    parser.add_argument("--backends", help="comma-separated accelnn backends and peers "
                                           "(numpy-plain: a plain NumPy transcription; torch, "
                                           "jax); default: all, those that cannot run here "
                                           "are listed as skipped with the reason")
    parser.add_argument("--dtypes", help="float32, float64 or both (default: both)")
    parser.add_argument("--phases", help="predict, train_step or both (default: both)")
    parser.add_argument("--quick", action="store_true",
                        help="CI mode: 0.05 s and 3 samples per row instead of 0.5 s and 5")
    parser.add_argument("--min-time", type=float, metavar="SECONDS",
                        help="minimum timing per row (overrides the mode's)")
    parser.add_argument("--seed", type=int, default=0, help="data and weights seed")
    parser.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    parser.add_argument("--plot", metavar="PATH",
                        help="write a PNG bar chart of samples/s (needs matplotlib: "
                             "pip install 'accelnn[bench]')")
    parser.add_argument("--compare", metavar="OLD_JSON",
                        help="ratio of samples/s to an earlier --json report; rows slower by "
                             "more than --threshold are flagged")
    parser.add_argument("--threshold", type=float, default=0.10,
                        help="regression threshold for --compare (default 0.10: 10%% slower)")


def main(args: argparse.Namespace) -> int:
    """Run `accelnn bench`: print the table, write what was asked. Returns 0, or 1 when a row
    failed, an error is beyond its limit or --compare found a regression. Bad options raise
    BenchError before anything runs."""
    if not 0 <= args.threshold < 1:
        raise BenchError(f"--threshold must be in [0, 1), got {args.threshold}")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise BenchError("--plot needs matplotlib: pip install 'accelnn[bench]'")
    old = None
    if args.compare:
        try:
            with open(args.compare) as f:
                old = json.load(f)
        except (OSError, ValueError) as exc:
            raise BenchError(f"--compare: cannot read {args.compare}: {exc}") from exc
    report = run(args.configs, args.backends, args.dtypes, args.phases, quick=args.quick,
                 min_time=args.min_time, seed=args.seed)
    if old is not None:
        report["compare"] = compare(report, old, args.threshold)
    text = to_markdown(report)
    print(text, end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        plot(report, args.plot)
    # Peers are reported, not judged: a peer's rounding is not accelnn's to answer for.
    bad = any(r["status"] != "ok" or r["within_limit"] is False
              for r in report["records"] if not r["peer"])
    regressed = any(c["regression"] for c in report.get("compare", {}).get("rows", []))
    return 1 if bad or regressed else 0
