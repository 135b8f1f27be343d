"""`fit_many`: K MLPs of one architecture trained at once, each as its own `MLP.fit` would
train it, in one pass over stacked parameters (accelnn.stacked).

    models = [accelnn.MLP([20, 64, 64, 2], seed=s, l2=a) for s, a in settings]
    histories = accelnn.fit_many(models, X, y, epochs=20, batch_size=32, optimizer="adam",
                                 each=[{"lr": lr} for lr in rates])

Model k ends exactly as `models[k].fit(X_k, y_k, **options, **each[k])` would have left it
(weights, optimizer and its state, RNG, epoch and sample counts, head, classes): its initial
weights are its own, every epoch's permutation comes from its own RNG, each of its
mini-batches is its own rows with its own sample weights, its learning rate follows its own
schedule, and it stops early on its own (its parameters then freeze while the others go on;
restore_best_weights brings its best epoch back). Tests hold every member to its single fit
(float64, 1e-12). What the members share is what one batched pass needs: layer sizes,
activations, output, dtype, backend and the optimizer's update rule (SGD, momentum,
Nesterov, Adam/AdamW, RMSprop; hyper-parameters may differ).

Rows: all members train on rows of the same device data. `X` and `y` are shared; a member
with data of its own (a cross-validation fold) gives it as each[k]["X"], each[k]["y"]. Data
objects given to several members are checked and moved to the device once (by identity:
hand the same array object to every member of a fold). Folds may also be expressed as
sample weights of 0 and bootstrap samples as counts; note that a weight-0 row still takes
its place in the mini-batches, so that is the fit on all rows with those weights, not the
fit on the other rows.

After the fit each MLP holds views of its row of the stacked arrays as its parameters and
optimizer state: it predicts, saves, and trains on as any MLP does.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
from collections import Counter

import numpy as np

from accelnn._data import check_X
from accelnn.batches import Data
from accelnn.callbacks import History, Stopping
from accelnn.features import check_feature_names, feature_names
from accelnn.fit_checks import (
    check_fit_options,
    gradient_optimizer,
    validation_rows,
    validation_set,
)
from accelnn.lbfgs import is_lbfgs
from accelnn.metrics import check_head, evaluate
from accelnn.model import MLP
from accelnn.stacked import EpochPlan, Stack
from accelnn.targets import encode_targets
from accelnn.training import DivergenceError
from accelnn.weighting import check_sample_weight, combined, unless_uniform

# MLP.fit's keyword arguments that fit_many takes, with MLP.fit's defaults.
OPTIONS = {"epochs": 1, "batch_size": None, "optimizer": None, "lr": None,
           "lr_schedule": "constant", "shuffle": True, "validation_data": None,
           "validation_split": 0.0, "early_stopping": False, "metrics": (), "callbacks": (),
           "verbose": 0, "sample_weight": None, "class_weight": None}


def fit_many(models, X=None, y=None, *, each=None, **options) -> list[History]:
    """Train every MLP of `models` (one architecture, dtype and backend) as `MLP.fit` would,
    in one pass; returns their Histories in order.

    X, y: the data every model trains on (as MLP.fit takes them); each[k]["X"] and
    each[k]["y"] replace them for model k. options: MLP.fit's keyword arguments for every
    model (epochs, batch_size, optimizer, lr, lr_schedule, shuffle, validation_data,
    validation_split, early_stopping, metrics, callbacks, sample_weight, class_weight);
    each: a list of one dict per model of the arguments that differ for it. A callback
    object given to several models is called for every one of them, with that model. A
    schedule object is used as MLP.fit uses it (its state changes), but one given to several
    models is copied for each (a schedule's state is one model's).

    A model whose loss becomes NaN or Inf is rolled back to the start of its last finite
    epoch, as MLP.fit does, and stops; its History's `error` holds the DivergenceError
    (None for the others) and the others train on.

    Raises, before any model changes: what MLP.fit raises for each model's arguments;
    TypeError for an argument MLP.fit does not take, and a model that is not an MLP;
    ValueError for an empty or repeated list of models, an `each` of another length,
    checkpoint, resume_from, L-BFGS or verbose (not supported here), and models that differ
    in layer sizes, activations, dtype, backend, output or the optimizer's update rule;
    RuntimeError for a model that another thread is training."""
    models = list(models)
    if not models:
        raise ValueError("fit_many needs at least one model")
    if not all(isinstance(m, MLP) for m in models):
        raise TypeError("fit_many trains accelnn.MLP models")
    if len({id(m) for m in models}) != len(models):
        raise ValueError("a model appears more than once in models")
    each = [{}] * len(models) if each is None else [dict(e) for e in each]
    if len(each) != len(models):
        raise ValueError(f"each has {len(each)} entries for {len(models)} models")
    cache: dict = {}
    members = [_check(model, X, y, {**options, **extra}, cache)
               for model, extra in zip(models, each)]
    _check_stackable(members)
    shared = Counter(id(m.schedule) for m in members)
    for member in members:  # a schedule object given to several models: a copy for each
        if shared[id(member.schedule)] > 1:
            member.schedule = copy.deepcopy(member.schedule)
    with contextlib.ExitStack() as held:
        for member in members:
            if not member.model.state.busy.acquire(blocking=False):
                raise RuntimeError("a model is already being trained in another thread")
            held.callback(member.model.state.busy.release)
        for member in members:
            member.apply()
        return _Run(members).go()


def _check(model, X, y, opts: dict, cache: dict) -> _Member:
    """Model `model`'s arguments checked as MLP.fit checks them, nothing changed yet."""
    X, y = opts.pop("X", X), opts.pop("y", y)
    for key in ("checkpoint", "resume_from"):
        if opts.pop(key, None) is not None:
            raise ValueError(f"fit_many does not take {key}; fit the models one by one")
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise TypeError(f"fit_many got arguments MLP.fit does not take: {unknown}")
    o = {**OPTIONS, **opts}
    if X is None or y is None:
        raise ValueError("every model needs data: give X and y, or each[k]['X'] and ['y']")
    if o["verbose"] != 0:
        raise ValueError("fit_many has no progress display: leave verbose=0")
    if is_lbfgs(o["optimizer"]):
        raise ValueError("fit_many trains with gradient descent; fit L-BFGS models one by one")
    c = check_fit_options(**{k: v for k, v in o.items() if k not in ("optimizer",
                                                                     "sample_weight")})
    opt = gradient_optimizer(model, o["optimizer"], c.lr)

    Xd, Yd, head, classes = _encode(model, X, y, cache)
    m = Xd.shape[0]
    weights = combined(check_sample_weight(o["sample_weight"], m), o["class_weight"], y,
                       head.name, classes)
    val = validation_set(model, c.validation_data, head, classes)
    check_head(c.metrics, head)
    keep, hold = validation_rows(m, c.validation_split, model.state.split_seed, weights)
    lr0 = opt.lr if c.lr is None else float(c.lr)
    return _Member(model, opt, c.schedule, c.callbacks, c.stopper, c.metrics, val, (Xd, Yd),
                   head, classes, feature_names(X), weights, keep, hold, c.epochs,
                   c.batch_size, c.shuffle, lr0)


def _encode(model, X, y, cache: dict):
    """model.encode(X, y) (checked device X, device Y, head, classes), with X checked and
    moved once per X object and Y once per distinct content, so that members sharing data
    share its device copy (a fold's X handed to every candidate, with targets that each
    estimator may have copied)."""
    check_feature_names(getattr(model, "feature_names_in_", None), X)
    key = (id(X), model.dtype, model.layer_sizes[0])
    if key not in cache:
        cache[key] = (X, check_X(model.backend, X, model.dtype, model.layer_sizes[0]))
    Xd = cache[key][1]
    head, classes, Y = encode_targets(y, Xd.shape[0], model.layer_sizes[-1], model.head,
                                      model.classes_)
    Y = np.ascontiguousarray(Y, dtype=model.dtype)
    ykey = (id(X), Y.shape, hashlib.blake2b(Y).digest())
    hit = cache.get(ykey)
    if hit is None or not np.array_equal(hit[0], Y):
        hit = cache[ykey] = (Y, model.backend.asarray(Y, model.dtype))
    return Xd, hit[1], head, classes


def _check_stackable(members: list[_Member]) -> None:
    first = members[0]
    ref = first.model
    for member in members[1:]:
        model = member.model
        differ = [what for what, a, b in (
            ("layer sizes", model.layer_sizes, ref.layer_sizes),
            ("hidden activations", [a.name for a in model.activations],
             [a.name for a in ref.activations]),
            ("dtype", model.dtype, ref.dtype), ("backend", model.backend.name,
                                                ref.backend.name),
            ("output", member.head.name, first.head.name),
            ("optimizer update rule", member.opt.rule.name, first.opt.rule.name)) if a != b]
        if differ or model.backend is not ref.backend or member.opt.rule is not first.opt.rule:
            raise ValueError(f"fit_many trains models that share layer sizes, activations, "
                             f"dtype, backend, output and update rule; these differ: "
                             f"{', '.join(differ) or 'backend instance or rule object'}")


class _Member:
    """One model's fit: its checked arguments, then (apply) the model's state as MLP.fit
    sets it up, and its rows of the shared data."""

    def __init__(self, model, opt, schedule, cbs, stopper, metrics, val, data, head, classes,
                 names, weights, keep, hold, epochs, batch_size, shuffle, lr0):
        self.model, self.opt, self.schedule, self.cbs = model, opt, schedule, cbs
        self.stopper, self.metrics, self.val, self.data = stopper, metrics, val, data
        self.head, self.classes, self.names, self.weights = head, classes, names, weights
        self.keep, self.hold, self.epochs, self.batch_size = keep, hold, epochs, batch_size
        self.shuffle, self.lr0 = shuffle, lr0

    def apply(self) -> None:
        """Change the model as MLP.fit does once every check has passed."""
        model, state = self.model, self.model.state
        model.head, model.classes_ = self.head, self.classes
        if self.names is not None:
            model.feature_names_in_ = self.names
        state.set_optimizer(self.opt)
        Xd, Yd = self.data
        self.rows = np.arange(Xd.shape[0]) if self.keep is None else self.keep
        if self.keep is not None:
            be = model.backend
            w = self.weights
            hold = be.asarray(self.hold)
            self.val = Data(model, Xd[hold], Yd[hold],
                            weights=None if w is None else unless_uniform(w[self.hold]))
            self.weights = None if w is None else unless_uniform(w[self.keep])
        self.n = len(self.rows)
        self.total = float(self.n if self.weights is None else self.weights.sum())
        self.bs = self.n if self.batch_size is None else min(self.batch_size, self.n)
        self.first = state.epoch
        self.last = self.first + self.epochs
        self.schedule.bind(self.last, self.first)
        self.stopping = None if self.stopper is None else Stopping(self.stopper, state)
        self.history = History()
        self.history.error = None
        self.done = False
        self.trained_on = None

    def train_data(self) -> Data:
        """The member's training rows as a Data (for the metrics on them), made once."""
        if self.trained_on is None:
            Xd, Yd = self.data
            if self.keep is not None:
                idx = self.model.backend.asarray(self.keep)
                Xd, Yd = Xd[idx], Yd[idx]
            self.trained_on = Data(self.model, Xd, Yd, weights=self.weights)
        return self.trained_on


class _Run:
    """The epochs of every member (MLP.fit's loop, accelnn.training, for K models): each
    epoch plans every live member's steps on the host, trains them all in one Stack.epoch,
    then books each member's epoch as MLP.fit does."""

    def __init__(self, members: list[_Member]):
        self.members = members
        first = members[0]
        net, be = first.model.network, first.model.backend
        datasets: dict[tuple, int] = {}  # each data set once, by identity
        parts = []
        for k, member in enumerate(members):
            member.k = k
            key = (id(member.data[0]), id(member.data[1]))
            if key not in datasets:
                datasets[key] = sum(d[0].shape[0] for d in parts)
                parts.append(member.data)
            member.global_rows = member.rows + datasets[key]
        xp = be.xp
        self.X = parts[0][0] if len(parts) == 1 else xp.concatenate([d[0] for d in parts])
        self.Y = parts[0][1] if len(parts) == 1 else xp.concatenate([d[1] for d in parts])
        opt = first.opt
        self.stack = Stack(net, first.head, len(members), [m.model.l2 for m in members],
                           opt.rule, opt.state_arrays)
        for k, member in enumerate(members):
            _adopt(self.stack, k, member.model.state)

    # Overflow on the way to divergence is reported as a member's DivergenceError, as MLP.fit
    # reports it: NumPy's warnings about it would only be noise.
    @np.errstate(over="ignore", invalid="ignore")
    def go(self) -> list[History]:
        for member in self.members:
            member.model.stop_training = False
            member.cbs.train_begin(member.model)
            member.start = member.model.state.snapshot()
            member.good = None
            member.logs = {}
        i = 0
        while not all(m.done for m in self.members):
            live = [m for m in self.members if not m.done]
            for member in live:
                if i:
                    member.model.state.snapshot(into=member.start)
                member.cbs.epoch_begin(member.first + i)
            plan, shares, rates = self._plan(live, i)
            with contextlib.ExitStack() as writing:
                for member in live:
                    writing.enter_context(member.model.state.guard.writing())
                losses = self.stack.epoch(self.X, self.Y, plan)
            for member, share, lr in zip(live, shares, rates):
                self._end_epoch(member, member.first + i, _epoch_loss(losses[member.k], share),
                                lr)
            i += 1
        for member in self.members:
            if member.history.error is None:
                if member.stopping is not None:
                    member.stopping.restore()
                member.cbs.train_end(member.logs)
        return [m.history for m in self.members]

    def _plan(self, live: list[_Member], i: int):
        """The epoch's EpochPlan over all members (the frozen ones take no step), each live
        member's steps drawn as MLP.fit draws them; and per live member the share of the
        epoch each of its steps has, and its learning rate."""
        K = len(self.members)
        S = max(-(-m.n // m.bs) for m in live)
        B = max(m.bs for m in live)
        weighted = np.array([m.weights is not None for m in self.members])
        idx, counts = np.zeros((K, S, B), np.int64), np.zeros((K, S), np.int64)
        weights = np.zeros((K, S, B)) if weighted[[m.k for m in live]].any() else None
        w_sums = np.zeros((K, S))
        scalars, shares, rates, folded = {}, [], [], {}
        for member in live:
            k, n, bs, state = member.k, member.n, member.bs, member.model.state
            lr = member.schedule.lr(member.lr0, member.first + i, state.samples_seen)
            order = np.arange(n)
            if bs < n and member.shuffle:
                order = state.rng.permutation(n)
            steps = -(-n // bs)
            rows = np.zeros(steps * bs, np.int64)
            rows[:n] = member.global_rows[order]
            count = np.full(steps, bs)
            count[-1] = n - (steps - 1) * bs
            share = count / n
            if member.weights is not None:  # Keras' rule: each batch by its own weights
                w = np.zeros(steps * bs)
                w[:n] = member.weights[order]
                # each batch's sum as MLP.fit takes it (NumPy's pairwise sum of its rows)
                sums = np.array([w[lo:min(lo + bs, n)].sum() for lo in range(0, n, bs)])
                share = sums / member.total
                kept = share != 0.0  # a batch of weight zero is skipped
                steps, share = int(kept.sum()), share[kept]
                rows = rows.reshape(-1, bs)[kept].ravel()
                count = count[kept]
                weights[k, :steps, :bs] = w.reshape(-1, bs)[kept]
                w_sums[k, :steps] = sums[kept]
            idx[k, :steps, :bs] = rows.reshape(steps, bs)
            counts[k, :steps] = count
            scalars[k] = _step_scalars(member.opt, state.opt_state, lr, steps, folded)
            shares.append(share.tolist())
            rates.append(lr)
        table = np.zeros((K, S, max(v.shape[1] for v in scalars.values())))
        for k, rows_of in scalars.items():
            table[k, :len(rows_of)] = rows_of
        return EpochPlan(idx, counts, weights, w_sums, weighted, table), shares, rates

    def _end_epoch(self, member: _Member, epoch: int, loss: float, lr: float) -> None:
        """Book the member's epoch as MLP.fit does: divergence rollback, its logs (metrics,
        validation, lr), the schedule, the history, early stopping and the callbacks."""
        model, state = member.model, member.model.state
        state.samples_seen += member.n
        if not math.isfinite(loss):
            return self._diverged(member, f"the loss became {loss} in epoch {epoch + 1}")
        member.good, member.start = member.start, (member.good if member.good is not None
                                                   else state.snapshot())
        state.epoch = epoch + 1
        logs = {"loss": loss}
        if member.metrics:
            logs.update(evaluate(model, member.train_data(), member.metrics))
            logs["loss"] = loss
        if member.val is not None:
            logs.update({f"val_{k}": v for k, v in
                         evaluate(model, member.val, member.metrics).items()})
        logs["lr"] = lr
        member.schedule.end_epoch(logs.get("val_loss", loss))
        member.history.append(logs)
        if member.stopping is not None and member.stopping.update(logs):
            model.stop_training = member.history.stopped_early = True
        member.cbs.epoch_end(epoch, logs, model)
        member.logs = logs
        if model.stop_training or epoch + 1 == member.last:
            member.done = True
            if not state.all_finite():
                self._diverged(member, f"the last update of epoch {epoch + 1} made weights "
                                       f"NaN or Inf")

    @staticmethod
    def _diverged(member: _Member, what: str) -> None:
        """Roll the member back to its last state whose loss was finite (MLP.fit's rule),
        stop it, and keep the DivergenceError in its History."""
        state = member.model.state
        back = member.good if member.good is not None else member.start
        state.restore(back)
        kept = (f"the start of epoch {back.epoch + 1}, the last whose loss was finite"
                if member.good is not None else "the start of this fit")
        member.history.error = DivergenceError(
            f"training diverged: {what}; the model keeps its weights, optimizer state and "
            f"epoch count from {kept}. Try a smaller lr.")
        member.done = True


def _step_scalars(opt, opt_state: dict, lr: float, steps: int, folded: dict) -> np.ndarray:
    """The update-rule scalars (steps, n) of `steps` steps (Optimizer.step_scalars, which
    advances the optimizer's host state: Adam's t), folded once for members whose optimizer,
    lr, host state and step count are the same (`folded` keeps them for the epoch)."""
    names = opt.state_scalars
    key = (type(opt), repr(opt.config()), lr, steps, tuple(opt_state[n] for n in names))
    if key not in folded:
        scratch = dict(opt_state)
        rows = np.array([opt.step_scalars(scratch, lr) for _ in range(steps)], np.float64)
        folded[key] = (rows.reshape(steps, -1), {n: scratch[n] for n in names})
    rows, after = folded[key]
    opt_state.update(after)
    return rows


def _epoch_loss(losses: np.ndarray, shares: list[float]) -> float:
    """The epoch's loss from its steps' losses, each counted by its share (MLP.fit's sum)."""
    total = 0.0
    for loss, share in zip(losses.tolist(), shares):
        total = loss if share == 1.0 else total + loss * share
    return float(total)


def _adopt(stack: Stack, k: int, state) -> None:
    """Copy a member's parameters and optimizer state into row k of the stack and hand it
    the row's views in their place."""
    for i, view in enumerate(stack.member(stack.P, k)):
        view[...] = state.params[i]
        state.params[i] = view
    for name in stack.state_names:
        arrays = state.opt_state[name]
        for i, view in enumerate(stack.member(stack.states[name], k)):
            view[...] = arrays[i]
            arrays[i] = view
