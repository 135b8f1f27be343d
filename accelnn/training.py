"""The training loop behind `MLP.fit`: epochs of (mini-)batches, schedules, validation,
metrics, sample and class weights, early stopping, callbacks, progress, checkpoints and exact
resume; and L-BFGS (accelnn.lbfgs), whose iterations take the place of epochs.

Everything here runs on every backend through the model's step function and the backend's
primitives; nothing in this module is backend-specific.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np

from accelnn import io, lbfgs
from accelnn._data import check_host_X
from accelnn.batches import Data
from accelnn.callbacks import History, Progress, Stopping
from accelnn.features import feature_names
from accelnn.fit_checks import (
    check_fit_options,
    gradient_optimizer,
    validation_rows,
    validation_set,
)
from accelnn.losses import get_head
from accelnn.metrics import check_head, evaluate
from accelnn.optimizers import check_lr
from accelnn.schedules import Schedule
from accelnn.steps import epoch_function, step_function
from accelnn.targets import encode_targets
from accelnn.weighting import check_sample_weight, combined, unless_uniform


class DivergenceError(FloatingPointError):
    """The training loss became NaN or Inf; the model keeps its last finite weights."""


def _check_path(name: str, value) -> str:
    """A file path: a str or an os.PathLike giving one."""
    try:
        path = os.fspath(value)
    except TypeError:
        path = None
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got "
                        f"{type(value).__name__} {value!r}")
    if not path:
        raise ValueError(f"{name} is an empty path; give a file name")
    return path


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


def _check_lbfgs(batch_size, lr, schedule, checkpoint, resume_from, part) -> None:
    """What L-BFGS (full batch, no learning rate, no state to save) refuses."""
    clash = [what for what, bad in (
        ("batch_size (it is full-batch; leave batch_size=None)", batch_size is not None),
        ("lr (it finds its own step sizes)", lr is not None),
        (f"lr_schedule {schedule.name!r}", type(schedule) is not Schedule),
        ("checkpoint (its memory is not saved; save the model after fit)",
         checkpoint is not None),
        ("resume_from (a checkpoint holds no L-BFGS state)", resume_from is not None),
        ("data-parallel training", part is not None)) if bad]
    if clash:
        raise ValueError(f"optimizer='lbfgs' does not take {'; '.join(clash)}")
    lbfgs.need_scipy()


def _fit(model, X, y, *, epochs, batch_size, optimizer, lr, lr_schedule, shuffle,
         validation_data, validation_split, early_stopping, metrics, callbacks, verbose,
         checkpoint, resume_from, sample_weight=None, class_weight=None, part=None,
         reducer=None):
    """MLP.fit (see its docstring). Every argument is checked before anything changes.

    Data-parallel seams (accelnn.distributed): part=(lo, m) says X holds rows lo, lo+1, ...
    of a data set of m rows split across processes and y (and sample_weight) hold the
    targets (weights) of all m rows (see MLP.encode); batches are drawn over all m rows and
    this process trains on its rows of each. reducer combines every step's gradients across
    processes (see accelnn.steps.step_function). With a part, metrics and validation_split
    are rejected: they would see this process's rows only; so is L-BFGS."""
    o = check_fit_options(epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                          validation_split=validation_split, validation_data=validation_data,
                          early_stopping=early_stopping, metrics=metrics, callbacks=callbacks,
                          lr_schedule=lr_schedule, lr=lr, class_weight=class_weight,
                          verbose=verbose)
    epochs, batch_size, schedule, metrics = o.epochs, o.batch_size, o.schedule, o.metrics
    if checkpoint is not None:
        checkpoint = _check_path("checkpoint", checkpoint)
    if resume_from is not None:
        resume_from = _check_path("resume_from", resume_from)
    solver = None
    if lbfgs.is_lbfgs(optimizer):
        _check_lbfgs(batch_size, lr, schedule, checkpoint, resume_from, part)
        solver = optimizer if isinstance(optimizer, lbfgs.LBFGS) else lbfgs.LBFGS()

    resumed = _read_resume(model, resume_from, optimizer, epochs, schedule, lr) \
        if resume_from is not None else None
    if resumed is not None:
        opt = resumed.state.optimizer
        if lr is None and "lr" in (resumed.state.run or {}):
            lr = check_lr(resumed.state.run["lr"])
    elif solver is not None:
        opt = None
    else:
        opt = gradient_optimizer(model, optimizer, lr)
    if part is not None and (validation_split or metrics):
        raise ValueError("data-parallel training supports neither metrics (accuracy "
                         "metrics and the others) nor validation_split: they would see one "
                         "process's rows only; give validation_data, which every process "
                         "evaluates whole, and watch its val_loss")

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
                                          known_classes, model.dtype)
        Yd = model.backend.asarray(Y[lo:lo + Xd.shape[0]], model.dtype)
    else:
        Xd, Yd, head, classes = model.encode(X, y, head=known_head, classes=known_classes,
                                             part=part)
        m = part[1] if part else Xd.shape[0]
    names = feature_names(X)  # checked against the model's by encode
    weights = combined(check_sample_weight(sample_weight, m), class_weight, y, head.name,
                       classes)
    val = validation_set(model, validation_data, head, classes)
    check_head(metrics, head)
    keep, hold = validation_rows(Xd.shape[0], validation_split,
                                 (resumed or model).state.split_seed, weights)
    if checkpoint is not None:
        target = checkpoint
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
    if names is not None:
        model.feature_names_in_ = names
    if solver is None:
        state.set_optimizer(opt)
    else:
        state.drop_optimizer()
    rows = None
    if keep is not None:
        be = model.backend
        wt, wv = (None, None) if weights is None else (weights[keep], weights[hold])
        if stream:  # both parts stay in the file: only their row numbers are kept
            val = Data(model, Xd, Yd[be.asarray(hold)], rows=hold, weights=unless_uniform(wv))
            rows, Yd = keep, Yd[be.asarray(keep)]
        else:
            val = Data(model, Xd[be.asarray(hold)], Yd[be.asarray(hold)],
                       weights=unless_uniform(wv))
            Xd, Yd = Xd[be.asarray(keep)], Yd[be.asarray(keep)]
        weights = unless_uniform(wt)
    first = state.epoch
    last = epochs if resumed is not None else first + epochs
    schedule.bind(last, first)
    if resumed is not None and resumed.state.run:
        schedule.load_state(resumed.state.run["schedule_state"])
    run = _Run(model, Data(model, Xd, Yd, rows, part, weights), batch_size, o.shuffle, val,
               metrics, o.stopper, schedule, o.callbacks, verbose, checkpoint,
               None if solver else (opt.lr if lr is None else float(lr)), reducer)
    return run.go(first, last, solver)


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
    def __init__(self, model, data, batch_size, shuffle, val, metrics, stopper, schedule,
                 cbs, verbose, checkpoint, lr0, reducer=None):
        self.model, self.data, self.shuffle, self.val = model, data, shuffle, val
        self.reducer = reducer
        self.bs = data.m if batch_size is None else min(batch_size, data.m)
        self.metrics, self.schedule = metrics, schedule
        self.stopping = None if stopper is None else Stopping(stopper, model.state)
        self.cbs, self.verbose, self.checkpoint, self.lr0 = cbs, verbose, checkpoint, lr0
        self.history = History()

    def _epoch(self, step, fused, epoch: int) -> tuple[float, float]:
        """One pass over the data, through the compiled epoch `fused` when there is one;
        returns (the mean step loss, each step counted by its batch's share, and lr)."""
        state = self.model.state
        lr = self.schedule.lr(self.lr0, epoch, state.samples_seen)
        order = None
        if self.bs < self.data.m and self.shuffle:
            order = state.rng.permutation(self.data.m)
        total = 0.0
        if fused is not None:
            total = fused(order, lr)
        else:
            for b in self.data.batches(self.bs, order):
                loss = step(b.X, b.Y, lr, b.w, b.w_sum)
                total = loss if b.share == 1.0 else total + loss * b.share
        state.samples_seen += self.data.m
        return float(total), lr

    def _end_epoch(self, epoch: int, loss: float, lr: float | None) -> dict:
        """Book epoch `epoch` (from 0), which trained with mean loss `loss`: its logs (the
        metrics on the training data and validation, lr), the schedule, the history, the
        progress display, early stopping and the callbacks."""
        model = self.model
        model.state.epoch = epoch + 1
        logs = {"loss": loss}
        if self.metrics:
            logs.update(evaluate(model, self.data, self.metrics))
            logs["loss"] = loss  # the training loss stays the steps' own
        if self.val is not None:
            logs.update({f"val_{k}": v for k, v in
                         evaluate(model, self.val, self.metrics).items()})
        if lr is not None:
            logs["lr"] = lr
        self.schedule.end_epoch(logs.get("val_loss", loss))
        self.history.append(logs)
        self.progress.update(epoch + 1, logs)
        if self.stopping is not None and self.stopping.update(logs):
            model.stop_training = self.history.stopped_early = True
        self.cbs.epoch_end(epoch, logs, model)
        return logs

    # Overflow on the way to divergence is detected from the loss and the weights, and
    # reported as DivergenceError: NumPy's warnings about it would only be noise.
    @np.errstate(over="ignore", invalid="ignore")
    def go(self, first: int, last: int, solver=None) -> History:
        """Train from epoch `first` up to `last` (with `solver`, an LBFGS: its iterations);
        whatever ends the fit, early stopping's best weights come back (restore_best_weights)
        before the final checkpoint and the callbacks' on_train_end."""
        model = self.model
        self.progress = Progress(self.verbose, last - first)
        model.stop_training = False
        self.cbs.train_begin(model)
        logs: dict = {}
        try:
            if solver is None:
                logs = self._descend(first, last)
            else:
                logs = self._lbfgs(solver, first, last)
        finally:
            self.progress.close()
        if self.stopping is not None:
            self.stopping.restore()
        if self.checkpoint is not None:
            self._write_checkpoint()
        self.cbs.train_end(logs)
        return self.history

    def _descend(self, first: int, last: int) -> dict:
        """The epochs of gradient descent; returns the last epoch's logs."""
        model, state = self.model, self.model.state
        step = step_function(model.network, state, model.head, self.reducer)
        fused = epoch_function(model.network, state, model.head, self.data, self.bs,
                               self.reducer)
        start = state.snapshot()  # the state at the start of the current epoch
        good = None  # ... and at the start of the last epoch whose loss was finite
        logs: dict = {}
        for epoch in range(first, last):
            if epoch > first:
                state.snapshot(into=start)
            self.cbs.epoch_begin(epoch)
            loss, lr = self._epoch(step, fused, epoch)
            if not math.isfinite(loss):
                self._diverged(state, good, start,
                               f"the loss became {loss} in epoch {epoch + 1}")
            good, start = start, (good if good is not None else state.snapshot())
            logs = self._end_epoch(epoch, loss, lr)
            last_epoch = model.stop_training or epoch + 1 == last
            if (self.checkpoint is not None or last_epoch) and not state.all_finite():
                # The epoch's loss was finite, but its last update was not.
                self._diverged(state, good, None, f"the last update of epoch {epoch + 1} "
                                                  f"made weights NaN or Inf")
            if last_epoch:
                break
            if self.checkpoint is not None:  # the last one is written after any restore
                self._write_checkpoint()
        return logs

    def _lbfgs(self, solver, first: int, last: int) -> dict:
        """L-BFGS iterations as epochs (accelnn.lbfgs); returns the last one's logs."""
        model, state, net, data = self.model, self.model.state, self.model.network, self.data
        batch = next(data.batches(data.m, None))
        ws = state.workspace(net, data.n)
        start = state.snapshot()
        epoch, logs = first, {}

        def loss_grads(params) -> float:
            return float(net.loss_grads(params, state.grads, model.head, batch.X, batch.Y, ws,
                                        batch.w, batch.w_sum))

        def on_iteration(loss: float) -> bool:
            nonlocal epoch, logs
            logs = self._end_epoch(epoch, loss, None)
            epoch += 1
            if model.stop_training:
                return True
            if epoch < last:
                self.cbs.epoch_begin(epoch)
            return False

        self.cbs.epoch_begin(epoch)
        result = lbfgs.minimize(solver, state, loss_grads, last - first, on_iteration)
        self.history.converged = bool(result.status == 0)
        self.history.message = str(result.message)
        if not (math.isfinite(result.fun) and state.all_finite()):
            self._diverged(state, None, start, f"L-BFGS ended at the loss {result.fun}")
        return logs

    def _write_checkpoint(self) -> None:
        """The model and what it needs beyond that to resume this run exactly: the schedule's
        name and state and the initial lr."""
        model = self.model
        run = {"schedule": self.schedule.name, "schedule_state": self.schedule.state(),
               "lr": self.lr0}
        io.save(self.checkpoint, model.file_record(model.state.saved(run)))

    @staticmethod
    def _diverged(state, good, start, what: str):
        """Roll back to the last state whose loss was finite and raise DivergenceError."""
        back = good if good is not None else start
        state.restore(back)
        kept = (f"the start of epoch {back.epoch + 1}, the last whose loss was finite"
                if good is not None else "the start of this fit")
        raise DivergenceError(f"training diverged: {what}; the model keeps its weights, "
                              f"optimizer state and epoch count from {kept}. Try a smaller lr.")
