"""The training state: everything that training changes in a model, apart from its
architecture, with snapshot/restore and a host form for files.

    params         [W1, b1, ..., WL, bL] backend arrays, W[l] (n[l-1], n[l])
    grads          the same shapes: the last step's gradients (scratch for the update)
    optimizer      the Optimizer, or None before the first fit (and after an L-BFGS fit)
    opt_state      its state: lists of backend arrays (one per parameter) and host scalars
    rng            numpy Generator: mini-batch shuffling
    split_seed     the seed of validation_split's permutation
    epoch          epochs run with the current optimizer state
    samples_seen   rows trained on with it (what `invscaling` counts)
    run            the learning-rate schedule's name, state and initial lr of the fit that last
                   ran, for an exact resume from a checkpoint (None otherwise)

Divergence rollback, checkpoints, resume, the scikit-learn estimators and data-parallel
training all go through these public methods.

Threads: inference reads the parameters under `guard.reading()`; every change of the
parameters (an update, a restore, new weights) happens under `guard.writing()`, which waits for
the readers of the moment and holds new ones back. So a prediction sees the weights after some
whole step, never a mix. Training itself (fit, steps) is for one thread at a time.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import numpy as np

from accelnn.optimizers import Optimizer


class WeightsGuard:
    """A readers-writer lock that prefers the writer: readers (inference) share the weights;
    a writer (an update) waits for the readers of the moment and keeps new ones out.

    Both fast paths, with nobody on the other side, cost one lock acquire and release: a
    reader passes the writer's gate and registers in a list (whose append and pop are atomic
    operations), a writer closes the gate and finds the list empty. Only a writer that finds
    readers inside waits, on a condition the last of them notifies."""

    def __init__(self):
        self._gate = threading.Lock()  # held by a writer; readers pass it to come in
        self._readers: list = []  # one entry per reader inside
        self._left = threading.Condition(threading.Lock())  # a waiting writer's wake-up
        self._waiting = False  # a writer waits on _left
        self._reading = _Held(self._enter_read, self._exit_read)
        self._writing = _Held(self._enter_write, self._gate.release)

    def reading(self) -> _Held:
        """`with guard.reading():` the weights stay as they are inside the block."""
        return self._reading

    def writing(self) -> _Held:
        """`with guard.writing():` the block may change the weights; no reader is inside."""
        return self._writing

    def _enter_read(self) -> None:
        with self._gate:
            self._readers.append(None)

    def _exit_read(self) -> None:
        self._readers.pop()
        if self._waiting and not self._readers:
            with self._left:
                self._left.notify_all()

    def _enter_write(self) -> None:
        self._gate.acquire()
        if self._readers:  # only readers that came in before the gate closed: wait them out
            with self._left:
                self._waiting = True
                self._left.wait_for(lambda: not self._readers)
                self._waiting = False


class _Held:
    """A context manager that calls `enter` and `exit`; stateless, so one serves all threads."""

    __slots__ = ("enter", "exit")

    def __init__(self, enter, exit):
        self.enter, self.exit = enter, exit

    def __enter__(self):
        self.enter()

    def __exit__(self, *exc):
        self.exit()


@dataclass
class SavedState:
    """A training state on the host, as a file holds it: params and optimizer arrays as NumPy
    arrays (in the model dtype), the rest as plain numbers and the RNG's state dict."""

    params: list[np.ndarray]
    optimizer: Optimizer | None = None
    opt_arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    opt_scalars: dict[str, int] = field(default_factory=dict)
    rng_state: dict | None = None
    split_seed: int = 0
    epoch: int = 0
    samples_seen: int = 0
    run: dict | None = None


class Snapshot:
    """A training state at one moment (parameters, optimizer state, epoch, samples seen, RNG
    state), in buffers that `TrainingState.snapshot(into=...)` reuses."""

    def __init__(self, arrays: list, scalars: dict, epoch: int, samples_seen: int, rng: dict):
        self.arrays, self.scalars, self.rng = arrays, scalars, rng
        self.epoch, self.samples_seen = epoch, samples_seen


class TrainingState:
    """See the module docstring. `params` are taken over as they are (backend arrays)."""

    def __init__(self, backend, params: list, rng: np.random.Generator, split_seed: int):
        self.backend = backend
        self.params = params
        self.grads = [backend.zeros(p.shape, p.dtype) for p in params]
        self.optimizer: Optimizer | None = None
        self.opt_state: dict = {}
        self.rng, self.split_seed = rng, split_seed
        self.epoch = 0
        self.samples_seen = 0
        self.run: dict | None = None
        self.guard = WeightsGuard()
        self.busy = threading.Lock()  # held by the fit that is training this state
        self._workspaces: dict = {}

    # ------------------------------------------------------------------ optimizer
    def set_optimizer(self, optimizer: Optimizer) -> None:
        """Use `optimizer`; a new one starts fresh state and restarts the epoch and sample
        counts (the same object continues)."""
        if optimizer is not self.optimizer:
            self.optimizer = optimizer
            self.opt_state = optimizer.init_state(self.backend, self.params)
            self.epoch = self.samples_seen = 0

    def drop_optimizer(self) -> None:
        """No optimizer and no optimizer state (an L-BFGS fit, which keeps none between fits);
        the epoch and sample counts start over."""
        self.optimizer, self.opt_state = None, {}
        self.epoch = self.samples_seen = 0

    def _live(self) -> list:
        """The arrays a snapshot keeps: params, then the optimizer's per-parameter state."""
        keys = self.optimizer.state_arrays if self.optimizer else ()
        return self.params + [a for key in keys for a in self.opt_state[key]]

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, into: Snapshot | None = None) -> Snapshot:
        """The state now, copied into `into`'s buffers when given (same optimizer), else new."""
        scalars = {k: self.opt_state[k]
                   for k in (self.optimizer.state_scalars if self.optimizer else ())}
        rng = self.rng.bit_generator.state
        if into is None:
            return Snapshot([self.backend.copy(a) for a in self._live()], scalars, self.epoch,
                            self.samples_seen, rng)
        for keep, a in zip(into.arrays, self._live()):
            keep[...] = a
        into.scalars, into.rng = scalars, rng
        into.epoch, into.samples_seen = self.epoch, self.samples_seen
        return into

    def restore(self, snap: Snapshot) -> None:
        """Put the state back as `snap` holds it (taken with the same optimizer)."""
        with self.guard.writing():
            for a, keep in zip(self._live(), snap.arrays):
                a[...] = keep
        self.opt_state.update(snap.scalars)
        self.epoch, self.samples_seen = snap.epoch, snap.samples_seen
        self.rng.bit_generator.state = snap.rng

    def set_params(self, arrays: list) -> None:
        """Copy `arrays` (backend or host arrays of the params' shapes and dtype) into params."""
        with self.guard.writing():
            for p, a in zip(self.params, arrays):
                p[...] = self.backend.asarray(a, p.dtype)

    def all_finite(self) -> bool:
        return all(self.backend.all_finite(p) for p in self.params)

    # ------------------------------------------------------------------ host form
    def saved(self, run: dict | None = None) -> SavedState:
        """This state on the host (copies); `run` as a checkpoint's schedule record."""
        be, opt = self.backend, self.optimizer
        with self.guard.reading():
            params = [np.array(be.to_numpy(p), copy=True) for p in self.params]
            arrays = {k: [np.array(be.to_numpy(a), copy=True) for a in self.opt_state[k]]
                      for k in (opt.state_arrays if opt else ())}
        return SavedState(params, opt, arrays,
                          {k: self.opt_state[k] for k in (opt.state_scalars if opt else ())},
                          copy.deepcopy(self.rng.bit_generator.state), self.split_seed,
                          self.epoch, self.samples_seen, run)

    def adopt(self, saved: SavedState) -> None:
        """Take over a checked SavedState of these shapes: params, optimizer and its state, RNG,
        split seed and counts. Nothing is checked here; accelnn.io checks what it reads."""
        self.set_params(saved.params)
        self.optimizer = saved.optimizer
        dtype = self.params[0].dtype
        self.opt_state = {k: [self.backend.asarray(a, dtype) for a in v]
                          for k, v in saved.opt_arrays.items()}
        self.opt_state.update(saved.opt_scalars)
        if saved.rng_state is not None:
            self.rng.bit_generator.state = saved.rng_state
        self.split_seed, self.epoch = saved.split_seed, saved.epoch
        self.samples_seen, self.run = saved.samples_seen, saved.run

    # ------------------------------------------------------------------ training buffers
    def workspace(self, network, m: int):
        """The training workspace for batches of m rows, kept for the last two batch sizes
        (a fit meets two at most: the batch and the rest)."""
        ws = self._workspaces.pop(m, None)
        if ws is None:
            ws = network.workspace(m)
        self._workspaces[m] = ws
        while len(self._workspaces) > 2:
            del self._workspaces[next(iter(self._workspaces))]
        return ws

    def batch_buffers(self, network, n: int, x_cols: int, y_cols: int):
        """Reused (X, Y) buffers for a gathered mini-batch of n rows."""
        ws = self.workspace(network, n)
        if ws.batch is None or ws.batch[0].shape[1] != x_cols or ws.batch[1].shape[1] != y_cols:
            ws.batch = (self.backend.empty((n, x_cols), network.dtype),
                        self.backend.empty((n, y_cols), network.dtype))
        return ws.batch
