"""What the runner times and checks: ModelSubject (an accelnn MLP on one backend), the peers
by name, the names `--backends` accepts and why one cannot run here."""

from __future__ import annotations

import importlib.util

import numpy as np

from .configs import FIT_LR, LR, PEERS, Config, Gemm, Inputs, gemm_operands
from .peers import JaxSubject, TorchSubject
from .peers_more import PlainNumpySubject, SklearnSubject


class ModelSubject:
    """An accelnn MLP on one backend: what the runner times and checks. Peers mirror it."""

    peer = False

    def __init__(self, name: str, config: Config, dtype: str, inputs: Inputs):
        from accelnn import MLP, get_backend

        self.name, self.inputs, self.config = name, inputs, config
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
            X = self.backend.asarray(self.inputs.Xp, self.model.dtype)
            return lambda: self.model.predict(X)
        if phase == "fit_epoch":
            from accelnn import Adam

            (X, y), config, opt = self.inputs.fit, self.config, Adam(FIT_LR)
            X = self.backend.asarray(X, self.model.dtype)
            return lambda: self.model.fit(X, y, epochs=config.fit_epochs,
                                          batch_size=config.batch, optimizer=opt)
        return self.model.step_function(self.inputs.X, self.inputs.y, lr=LR)

    def forward(self) -> np.ndarray:
        self.model.set_weights(self.inputs.weights)
        return self.backend.to_numpy(self.model.forward(self.inputs.Xp))

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


PEER_CLASSES = {"numpy-plain": PlainNumpySubject, "torch": TorchSubject, "jax": JaxSubject,
               "sklearn": SklearnSubject}


def backend_names() -> list[str]:
    """Every name `--backends` accepts: the registered accelnn backends, then the peers."""
    from accelnn import available_backends

    return [*available_backends(), *PEERS]


def unavailable_reason(name: str) -> str | None:
    """None when `name` can run here, else why not (as `accelnn info` says it)."""
    if name == "numpy-plain":
        return None
    if name in PEERS:
        package = {"sklearn": "scikit-learn"}.get(name, name)
        return None if importlib.util.find_spec(name) else \
            f"not installed (a peer for comparison, never a dependency: pip install {package})"
    from accelnn import available_backends

    status = available_backends()[name]
    return None if status.available else status.reason


def ready(subject, phase: str) -> None:
    """Call before running `phase` of `subject`. A peer that computes through NumPy's BLAS
    (numpy-plain, scikit-learn) gets the threads accelnn's policy gives the phase's largest
    GEMM (accelnn.machine.BLAS_THREADS), as the torch peer sets its own: the library's cores
    for a large network on free cores, one thread for a small one or on a busy machine (where
    a multi-threaded BLAS stalls on a descheduled worker), and never the count accelnn's last
    GEMM happened to leave in the process. accelnn's backends set theirs at every GEMM."""
    if subject.peer:
        from accelnn.machine import BLAS_THREADS

        BLAS_THREADS.use(BLAS_THREADS.for_gemm(subject.config.largest_gemm(phase)))


def make_subject(name: str, config: Config, dtype: str, inputs: Inputs):
    """The network of `config` on backend or peer `name`, from `inputs`."""
    if name in PEER_CLASSES:
        return PEER_CLASSES[name](config, dtype, inputs)
    return ModelSubject(name, config, dtype, inputs)

