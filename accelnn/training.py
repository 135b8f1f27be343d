"""The training loop behind `MLP.fit`: epochs of (mini-)batches, schedules, validation,
metrics, early stopping, callbacks, progress, checkpoints and exact resume.

Everything here runs on every backend through the model's step function and the backend's
primitives; nothing in this module is backend-specific.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np

from accelnn import io
from accelnn._data import check_host_X
from accelnn.callbacks import EarlyStopping, History, Progress, as_callback
from accelnn.losses import get_head
from accelnn.network import Scratch
from accelnn.optimizers import check_lr, get_optimizer
from accelnn.schedules import get_schedule
from accelnn.targets import encode_targets


class DivergenceError(FloatingPointError):
    """The training loss became NaN or Inf; the model keeps its last finite weights."""


def _check_int(name: str, value, low: int, allow_none=False):
    if allow_none and value is None:
        return None
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value >= low):
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}an integer >= {low}, got {value!r}")
    return int(value)


class Data:
    """Rows to train or evaluate on. Device-resident normally; for a memory-mapped X
    (np.memmap) trained in mini-batches, X stays on the host and each batch is read from the
    file and moved alone, so the process never holds the whole of X. `rows` selects a subset
    of a memory-mapped X (the training part of a validation split) without copying it.

    part=(lo, m): this process holds rows lo, lo+1, ... of a data set of m rows split across
    processes (accelnn.distributed). `m` and the batches then number the rows of the whole
    data set, and each batch yields this process's rows of it (possibly none) with the whole
    batch's weight; `chunks` covers this process's rows only."""

    def __init__(self, model, X, Y, rows=None, part=None):
        self.model, self.X, self.Y, self.rows = model, X, Y, rows
        self.stream = isinstance(X, np.memmap)
        self.n = len(rows) if rows is not None else X.shape[0]  # rows held here
        self.lo, self.m = part or (0, self.n)

    def _take(self, idx):
        """The rows idx (indices into this data: on the host when streaming, else on the
        device) as device arrays, gathered into reused buffers."""
        be, model = self.model.backend, self.model
        Xbuf, Ybuf = model.state.batch_buffers(model.network, idx.shape[0], self.X.shape[1],
                                               self.Y.shape[1])
        if self.stream:
            src = idx if self.rows is None else self.rows[idx]
            return (be.asarray(self.X[src], model.dtype),
                    be.take_rows(self.Y, be.asarray(idx), Ybuf))
        return be.take_rows(self.X, idx, Xbuf), be.take_rows(self.Y, idx, Ybuf)

    def batches(self, bs: int, order):
        """(X, Y, weight) per batch of the permutation `order` (None: in order), weight being
        the batch's share of the rows. The permutation moves to the device once per epoch."""
        m = self.m
        if bs >= m and order is None and not self.stream:
            yield self.X, self.Y, 1.0
            return
        if order is None:
            order = np.arange(m)
        part = self.n != m
        if not (self.stream or part):
            order = self.model.backend.asarray(order)
        for lo in range(0, m, bs):
            idx = order[lo:lo + bs]
            weight = idx.shape[0] / m
            if part:  # this process's rows of the batch, picked on the host (no device sync)
                idx = idx[(idx >= self.lo) & (idx < self.lo + self.n)] - self.lo
                if not self.stream:
                    idx = self.model.backend.asarray(idx)
            yield (*self._take(idx), weight)

    def chunks(self, size: int):
        """(X, Y) in order, at most `size` rows at a time (for evaluation)."""
        for lo in range(0, self.n, size):
            hi = min(lo + size, self.n)
            if self.stream:
                yield self._take(np.arange(lo, hi))
            else:
                yield self.X[lo:hi], self.Y[lo:hi]


def _n_correct(xp, Z, Y, head_name: str):
    """Correct predictions in a chunk, from the logits (the same decisions as from A)."""
    if head_name == "softmax":
        return (xp.argmax(Z, axis=1) == xp.argmax(Y, axis=1)).sum()
    return ((Z > 0) == (Y > 0.5)).sum() / Z.shape[1]


def evaluate(model, data: Data, chunk: int = 4096) -> tuple[float, float | None]:
    """(loss, accuracy) of the model on `data`, a chunk at a time; accuracy None for a
    regressor. One host synchronisation at the end. Buffers live for this call only."""
    be, xp, head, net, state = (model.backend, model.backend.xp, model.head, model.network,
                                model.state)
    scratch = Scratch(limit=math.inf)  # shared by the chunks of this call
    loss = correct = 0.0
    with state.guard.reading():
        for Xc, Yc in data.chunks(chunk):
            Z = net.logits(state.params, Xc, scratch)
            if head.name != "identity":
                correct = correct + _n_correct(xp, Z, Yc, head.name)
            loss = loss + be.loss_delta(Z, Yc, head, Z) * (Xc.shape[0] / data.m)
        loss = float(loss + net.l2_loss(state.params, data.m))
    return loss, (None if head.name == "identity" else float(correct) / data.m)


def step_function(network, state, head, reducer=None):
    """One training step of `network` on `state`, step(X, Y, lr) -> loss (0-d backend array,
    before the update): the backend's compiled path when it has one for this network, else
    the shared path. The parameters change under `state.guard.writing()` only.

    reducer: for data-parallel training (accelnn.distributed), a callable
    `reducer(loss, grads, m) -> (loss, m_batch)` called between the gradients and the
    update. X is then this process's part of a batch (possibly no rows: loss and grads
    are then meaningless and the reducer must count them as zero); `loss` and `grads`
    are the mean data loss and its gradients over those m rows, and the reducer replaces
    the grads in place by the means over the whole batch, returning that batch's mean
    loss and row count. L2 is added once afterwards, for the whole batch. With a
    reducer, the backend's compiled path is never used."""
    be, opt, guard = network.backend, state.optimizer, state.guard
    params, grads, opt_state = state.params, state.grads, state.opt_state
    if reducer is None:
        fused = be.fused_train_step(network.spec(head, opt))
        if fused is not None:
            def fused_step(X, Y, lr):
                with guard.writing():
                    return fused(params, grads, opt_state, X, Y, lr)

            return fused_step

    def loss_grads(X, Y):
        ws = state.workspace(network, X.shape[0])
        return network.loss_grads(params, grads, head, X, Y, ws)

    replay = be.replayed(loss_grads) if reducer is None else None

    def step(X, Y, lr):
        if reducer is None:
            loss = replay(X, Y)
        else:
            m = X.shape[0]
            ws = state.workspace(network, m)
            loss, m = reducer(network.data_loss_grads(params, grads, head, X, Y, ws)
                              if m else 0.0, grads, m)
            loss = network.add_l2(params, grads, loss, m)
        with guard.writing():
            opt.update(be, params, grads, opt_state, lr)
        return loss

    return step


def epoch_function(network, state, head, data: Data, batch_size: int, reducer=None):
    """The backend's compiled epoch of mini-batches for this fit, `epoch(order, lr) -> total`
    (the permutation `order` of the rows, None for their order; the sample-weighted sum of the
    step losses), or None: on a backend without one, for full batches, and for data-parallel
    training. Every backend sees the same batches: the permutation comes from the caller."""
    if reducer is not None or data.n != data.m or batch_size >= data.m:
        return None
    fused = network.backend.fused_train_epoch(network.spec(head, state.optimizer))
    if fused is None:
        return None
    params, grads, opt_state = state.params, state.grads, state.opt_state

    def epoch(order, lr):
        if order is None:
            order = np.arange(data.m)
        return fused(params, grads, opt_state, data.X, data.Y, data.rows, order, batch_size,
                     lr, state.guard.writing)

    return epoch


def fit(model, X, y, **options):
    """MLP.fit (see its docstring), for one thread at a time per model: RuntimeError when
    another thread is already training this model."""
    if not model.state.busy.acquire(blocking=False):
        raise RuntimeError("this model is already being trained in another thread; a model "
                           "trains in one thread at a time (predictions may run alongside)")
    try:
        return _fit(model, X, y, **options)
    finally:
        model.state.busy.release()


def _fit(model, X, y, *, epochs, batch_size, optimizer, lr, lr_schedule, shuffle,
         validation_data, validation_split, early_stopping, metrics, callbacks, verbose,
         checkpoint, resume_from, part=None, reducer=None):
    """MLP.fit (see its docstring). Every argument is checked before anything changes.

    Data-parallel seams (accelnn.distributed): part=(lo, m) says X holds rows lo, lo+1, ...
    of a data set of m rows split across processes and y holds the targets of all m rows
    (see MLP.encode); batches are drawn over all m rows and this process trains on its
    rows of each. reducer combines every step's gradients across processes (see
    step_function). With a part, accuracy metrics and validation_split are rejected:
    they would see this process's rows only."""
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1, allow_none=True)
    if not (isinstance(validation_split, (int, float)) and 0.0 <= validation_split < 1.0):
        raise ValueError(f"validation_split must be a number in [0, 1), got "
                         f"{validation_split!r}")
    if validation_split and validation_data is not None:
        raise ValueError("give validation_data or validation_split, not both")
    if validation_data is not None and not (
            isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise ValueError("validation_data must be a pair (X_val, y_val)")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    metrics = tuple(metrics)
    if any(name != "accuracy" for name in metrics):
        raise ValueError(f"unknown metrics {metrics!r}; the one metric is 'accuracy'")
    stopper = EarlyStopping() if early_stopping is True else (early_stopping or None)
    if stopper is not None and not isinstance(stopper, EarlyStopping):
        raise TypeError("early_stopping must be True, False or an EarlyStopping")
    if stopper is not None and stopper.monitor.startswith("val_") and not (
            validation_data is not None or validation_split):
        raise ValueError(f"early stopping on {stopper.monitor!r} needs validation_data or "
                         f"validation_split")
    schedule = get_schedule(lr_schedule)
    cbs = [as_callback(cb) for cb in callbacks]
    if lr is not None:
        check_lr(lr)

    resumed = _read_resume(model, resume_from, optimizer, epochs, schedule, lr) \
        if resume_from is not None else None
    if resumed is not None:
        opt = resumed.state.optimizer
        if lr is None and "lr" in (resumed.state.run or {}):
            lr = check_lr(resumed.state.run["lr"])
    elif optimizer is None:
        opt = model.state.optimizer or get_optimizer("sgd", lr)
    else:
        opt = get_optimizer(optimizer, lr)

    if part is not None and (validation_split or "accuracy" in metrics
                             or (stopper and "accuracy" in stopper.monitor)):
        raise ValueError("data-parallel training supports neither accuracy metrics nor "
                         "validation_split (they would see one process's rows only); give "
                         "validation_data, which every process evaluates whole")

    # Targets are encoded as the checkpoint (when resuming) or the model already does.
    known_head, known_classes = model.head, model.classes_
    if resumed is not None:
        output = resumed.config["output"]
        known_head = model.head or (None if output == "auto" else get_head(output))
        known_classes = resumed.classes
    stream = isinstance(X, np.memmap) and batch_size is not None
    if stream:
        Xd = check_host_X(X, model.layer_sizes[0], model.dtype)
        lo, m = part or (0, Xd.shape[0])
        head, classes, Y = encode_targets(y, m, model.layer_sizes[-1], known_head,
                                          known_classes)
        Yd = model.backend.asarray(Y[lo:lo + Xd.shape[0]], model.dtype)
    else:
        Xd, Yd, head, classes = model.encode(X, y, head=known_head, classes=known_classes,
                                             part=part)
    val = None
    if validation_data is not None:
        val = Data(model, *model.encode(*validation_data, head=head, classes=classes)[:2])
    needs_accuracy = "accuracy" in metrics or (stopper and "accuracy" in stopper.monitor)
    if needs_accuracy and head.name == "identity":
        raise ValueError("accuracy needs a classifier (sigmoid or softmax output)")

    n_val = max(1, int(round(Xd.shape[0] * validation_split))) if validation_split else 0
    if n_val >= Xd.shape[0]:
        raise ValueError(f"validation_split={validation_split} holds out {n_val} of "
                         f"{Xd.shape[0]} rows, leaving none to train on")
    if checkpoint is not None:
        target = os.fspath(checkpoint)
        folder = os.path.dirname(os.path.abspath(target))
        if os.path.isdir(target) or target.endswith(os.sep):
            raise ValueError(f"checkpoint {target!r} is a folder; give a file name")
        if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
            raise ValueError(f"checkpoint {target!r}: folder {folder!r} does not exist or is "
                             f"not writable")

    # Every check passed: from here on the model changes.
    state = model.state
    if resumed is not None:
        state.adopt(resumed.state)
    model.head, model.classes_ = head, classes
    state.set_optimizer(opt)
    rows = None
    if validation_split:
        perm = np.random.default_rng(state.split_seed).permutation(Xd.shape[0])
        keep, hold = np.sort(perm[n_val:]), np.sort(perm[:n_val])
        be = model.backend
        if stream:  # both parts stay in the file: only their row numbers are kept
            val = Data(model, Xd, Yd[be.asarray(hold)], rows=hold)
            rows, Yd = keep, Yd[be.asarray(keep)]
        else:
            val = Data(model, Xd[be.asarray(hold)], Yd[be.asarray(hold)])
            Xd, Yd = Xd[be.asarray(keep)], Yd[be.asarray(keep)]
    first = state.epoch
    last = epochs if resumed is not None else first + epochs
    schedule.bind(last)
    if resumed is not None and resumed.state.run:
        schedule.load_state(resumed.state.run["schedule_state"])
    run = _Run(model, Data(model, Xd, Yd, rows, part), batch_size, shuffle,
               val, needs_accuracy, stopper, schedule,
               cbs, verbose, checkpoint, opt.lr if lr is None else float(lr), reducer)
    return run.go(first, last)


def _read_resume(model, path, optimizer, epochs: int, schedule, lr) -> io.ModelFile:
    """The checkpoint at `path`, checked against the model and this fit before anything
    changes: the same network (layers, activations, dtype) and output, optimizer state to
    resume, epochs left to run, and the same schedule, whose saved state must load and give a
    usable learning rate. ValueError naming the file otherwise."""
    if optimizer is not None:
        raise ValueError("resume_from restores the optimizer saved in the checkpoint; "
                         "leave optimizer unset")
    record = io.read(path)
    config, state = record.config, record.state
    mine = model.get_config()
    keys = ("layer_sizes", "hidden_activation", "dtype")
    if [config[k] for k in keys] != [mine[k] for k in keys]:
        raise ValueError(f"{path}: the checkpoint is of another network (layers, activations,"
                         f" dtype) {tuple(config[k] for k in keys)}, not "
                         f"{tuple(mine[k] for k in keys)}")
    if "auto" not in (mine["output"], config["output"]) and mine["output"] != config["output"]:
        raise ValueError(f"{path}: the checkpoint has a {config['output']} output, the model "
                         f"a {mine['output']} output")
    if state.optimizer is None:
        raise ValueError(f"{path}: the file holds no optimizer state to resume from")
    if state.epoch >= epochs:
        raise ValueError(f"{path}: the checkpoint is at epoch {state.epoch}, nothing is left "
                         f"to run for epochs={epochs}")
    run = state.run or {}
    if run and run.get("schedule") != schedule.name:
        raise ValueError(f"{path}: the checkpoint ran lr_schedule {run.get('schedule')!r}; "
                         f"resume it with the same, not {schedule.name!r}")
    if run:
        trial = copy.deepcopy(schedule)
        try:
            lr0 = check_lr(run["lr"] if lr is None else lr)
            trial.bind(epochs)
            trial.load_state(run["schedule_state"])
            rate = trial.lr(lr0, state.epoch, state.samples_seen)
            if not (isinstance(rate, float) and math.isfinite(rate) and rate >= 0):
                raise ValueError(f"it gives the learning rate {rate!r}")
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"{path}: bad schedule state {run.get('schedule_state')!r} for "
                             f"{schedule.name!r}: {type(exc).__name__}: {exc}") from exc
    return record


class _Run:
    def __init__(self, model, data, batch_size, shuffle, val, accuracy, stopper, schedule,
                 cbs, verbose, checkpoint, lr0, reducer=None):
        self.model, self.data, self.shuffle, self.val = model, data, shuffle, val
        self.reducer = reducer
        self.bs = data.m if batch_size is None else min(batch_size, data.m)
        self.accuracy, self.stopper, self.schedule = accuracy, stopper, schedule
        self.cbs, self.verbose, self.checkpoint, self.lr0 = cbs, verbose, checkpoint, lr0

    def _epoch(self, step, fused, epoch: int) -> tuple[float, float]:
        """One pass over the data, through the compiled epoch `fused` when there is one;
        returns (sample-weighted mean step loss, lr)."""
        state = self.model.state
        lr = self.schedule.lr(self.lr0, epoch, state.samples_seen)
        order = None
        if self.bs < self.data.m and self.shuffle:
            order = state.rng.permutation(self.data.m)
        total = 0.0
        if fused is not None:
            total = fused(order, lr)
        else:
            for Xb, Yb, weight in self.data.batches(self.bs, order):
                loss = step(Xb, Yb, lr)
                total = loss if weight == 1.0 else total + loss * weight
        state.samples_seen += self.data.m
        return float(total), lr

    def _logs(self, loss: float, lr: float) -> dict:
        logs = {"loss": loss}
        if self.accuracy:
            logs["accuracy"] = evaluate(self.model, self.data)[1]
        if self.val is not None:
            logs["val_loss"], acc = evaluate(self.model, self.val)
            if self.accuracy:
                logs["val_accuracy"] = acc
        logs["lr"] = lr
        return logs

    # Overflow on the way to divergence is detected from the loss and the weights, and
    # reported as DivergenceError: NumPy's warnings about it would only be noise.
    @np.errstate(over="ignore", invalid="ignore")
    def go(self, first: int, last: int) -> History:
        model, be, state = self.model, self.model.backend, self.model.state
        history = History()
        step = step_function(model.network, state, model.head, self.reducer)
        fused = epoch_function(model.network, state, model.head, self.data, self.bs,
                               self.reducer)
        start = state.snapshot()  # the state at the start of the current epoch
        good = None  # ... and at the start of the last epoch whose loss was finite
        best, best_score, wait = None, math.inf, 0
        progress = Progress(self.verbose, last - first)
        model.stop_training = False
        try:
            for epoch in range(first, last):
                if epoch > first:
                    state.snapshot(into=start)
                loss, lr = self._epoch(step, fused, epoch)
                if not math.isfinite(loss):
                    self._diverged(state, good, start,
                                   f"the loss became {loss} in epoch {epoch + 1}")
                good, start = start, (good if good is not None else state.snapshot())
                state.epoch = epoch + 1
                logs = self._logs(loss, lr)
                self.schedule.end_epoch(logs.get("val_loss", loss))
                history.append(logs)
                progress.update(epoch + 1, logs)
                if self.stopper is not None:
                    score = self.stopper.sign * logs[self.stopper.monitor]
                    if score < best_score - self.stopper.min_delta:
                        best_score, wait = score, 0
                        if self.stopper.restore_best_weights:
                            best = [be.copy(p) for p in state.params]
                    else:
                        wait += 1
                        if wait >= self.stopper.patience:
                            model.stop_training = history.stopped_early = True
                for cb in self.cbs:
                    cb(epoch + 1, logs, model)
                last_epoch = model.stop_training or epoch + 1 == last
                if (self.checkpoint is not None or last_epoch) and not state.all_finite():
                    # The epoch's loss was finite, but its last update was not.
                    self._diverged(state, good, None, f"the last update of epoch {epoch + 1} "
                                                      f"made weights NaN or Inf")
                if self.checkpoint is not None and not (history.stopped_early and best):
                    self._write_checkpoint()
                if model.stop_training:
                    break
        finally:
            progress.close()
        if history.stopped_early and best is not None:
            state.set_params(best)
            if self.checkpoint is not None:
                self._write_checkpoint()
        return history

    def _write_checkpoint(self) -> None:
        """The model and what it needs beyond that to resume this run exactly: the schedule's
        name and state and the initial lr."""
        model = self.model
        run = {"schedule": self.schedule.name, "schedule_state": self.schedule.state(),
               "lr": self.lr0}
        io.save(self.checkpoint, io.ModelFile(model.get_config(), model.classes_,
                                              model.state.saved(run)))

    @staticmethod
    def _diverged(state, good, start, what: str):
        """Roll back to the last state whose loss was finite and raise DivergenceError."""
        back = good if good is not None else start
        state.restore(back)
        kept = (f"the start of epoch {back.epoch + 1}, the last whose loss was finite"
                if good is not None else "the start of this fit")
        raise DivergenceError(f"training diverged: {what}; the model keeps its weights, "
                              f"optimizer state and epoch count from {kept}. Try a smaller lr.")
