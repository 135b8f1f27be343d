"""A training step and a compiled epoch of mini-batches for a network and its training
state: the units `accelnn.training`'s fit loop runs, and `MLP.step_function` gives out. The
parameters change only under the training state's writing guard."""

from __future__ import annotations

import numpy as np

from accelnn.batches import Data


def step_function(network, state, head, reducer=None):
    """One training step of `network` on `state`, step(X, Y, lr, w=None, w_sum=None) -> loss
    (0-d backend array, before the update): the backend's compiled path when it has one for
    this network, else the shared path. The parameters change under `state.guard.writing()`
    only. With sample weights (w, a device column (k, 1), and w_sum, their sum on the host),
    the step descends the weighted mean loss (accelnn.network) on the shared path.

    reducer: for data-parallel training (accelnn.distributed), a callable
    `reducer(loss, grads, m) -> (loss, m_batch)` called between the gradients and the
    update. X is then this process's part of a batch (possibly no rows, or rows of weight
    zero: loss and grads are then meaningless and the reducer must count them as zero);
    `loss` and `grads` are the mean data loss and its gradients over those m rows (m: their
    number, or the sum of their weights), and the reducer replaces the grads in place by the
    means over the whole batch, returning that batch's mean loss and its m. L2 is added once
    afterwards, for the whole batch. With a reducer, the backend's compiled path is never
    used."""
    be, opt, guard = network.backend, state.optimizer, state.guard
    params, grads, opt_state = state.params, state.grads, state.opt_state
    fused = be.fused_train_step(network.spec(head, opt)) if reducer is None else None

    def loss_grads(X, Y):
        ws = state.workspace(network, X.shape[0])
        return network.loss_grads(params, grads, head, X, Y, ws)

    replay = be.replayed(loss_grads) if reducer is None else None

    def step(X, Y, lr, w=None, w_sum=None):
        if fused is not None and w is None:
            with guard.writing():
                return fused(params, grads, opt_state, X, Y, lr)
        if reducer is not None:
            m = X.shape[0] if w is None else w_sum
            ws = state.workspace(network, X.shape[0])
            loss, m = reducer(network.data_loss_grads(params, grads, head, X, Y, ws, w, w_sum)
                              if m else 0.0, grads, m)
            loss = network.add_l2(params, grads, loss, m)
        elif w is None:
            loss = replay(X, Y)
        else:
            ws = state.workspace(network, X.shape[0])
            loss = network.loss_grads(params, grads, head, X, Y, ws, w, w_sum)
        with guard.writing():
            opt.update(be, params, grads, opt_state, lr)
        return loss

    return step


def epoch_function(network, state, head, data: Data, batch_size: int, reducer=None):
    """The backend's compiled epoch of mini-batches for this fit, `epoch(order, lr) -> total`
    (the permutation `order` of the rows, None for their order; the sample-weighted sum of the
    step losses), or None: on a backend without one, for full batches, for sample weights and
    for data-parallel training. Every backend sees the same batches: the permutation comes
    from the caller."""
    if reducer is not None or data.n != data.m or batch_size >= data.m or data.w is not None:
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
