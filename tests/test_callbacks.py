"""Callbacks and what a fit reports: Keras' callback objects beside accelnn's own forms, the
History as a mapping, and early stopping's best weights whatever ends the fit."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn
from accelnn.callbacks import Callback


def _problem(m=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=m) > 0).astype(int)
    return X, y


def _weights_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb))


class Recorder(Callback):
    """Keras' form: records every hook with its arguments, stops after `stop_after` epochs."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    def set_model(self, model):
        super().set_model(model)
        self.calls.append(("set_model", model))

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", dict(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, logs["loss"]))
        if self.stop_after is not None and epoch + 1 == self.stop_after:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", dict(logs)))


def test_keras_callbacks_get_every_hook_in_order_with_epochs_from_zero():
    X, y = _problem()
    rec = Recorder()
    model = accelnn.MLP([3, 4, 1], seed=0, backend="numpy")
    hist = model.fit(X, y, epochs=3, callbacks=[rec])
    assert rec.model is model and rec.calls[0] == ("set_model", model)
    assert [c[0] for c in rec.calls[1:]] == ["train_begin"] + [
        "epoch_begin", "epoch_end"] * 3 + ["train_end"]
    assert [c[1] for c in rec.calls if c[0] == "epoch_begin"] == [0, 1, 2]
    assert [c[2] for c in rec.calls if c[0] == "epoch_end"] == hist["loss"]
    assert rec.calls[-1][1]["loss"] == hist["loss"][-1]  # on_train_end: the last epoch's logs


def test_a_keras_callback_stops_through_its_model_and_the_old_forms_still_work():
    X, y = _problem()
    seen = []

    class Old:  # accelnn's own form: on_epoch_end(epoch, logs, model), epochs from 1
        def on_epoch_end(self, epoch, logs, model):
            seen.append(("old", epoch))

    class OnlyBegin:  # any one of Keras' hooks makes an object a callback
        def on_train_begin(self, logs=None):
            seen.append(("begin", logs))

    rec = Recorder(stop_after=2)
    hist = accelnn.MLP([3, 4, 1], seed=0, backend="numpy").fit(
        X, y, epochs=10, callbacks=[rec, Old(), OnlyBegin(),
                                    lambda epoch, logs, model: seen.append(("fn", epoch))])
    assert hist.epochs == 2 and not hist.stopped_early
    assert seen == [("begin", {}), ("old", 1), ("fn", 1), ("old", 2), ("fn", 2)]
    with pytest.raises(TypeError, match="a callback must be callable or have on_epoch_end"):
        accelnn.MLP([3, 4, 1], backend="numpy").fit(X, y, callbacks=[object()])


def test_history_is_a_mapping_that_names_its_keys():
    X, y = _problem()
    hist = accelnn.MLP([3, 4, 1], seed=0, backend="numpy").fit(
        X, y, epochs=2, validation_split=0.25, metrics=["accuracy"])
    assert list(hist) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert dict(hist) == hist.history and len(hist) == 5 and hist.epochs == 2
    assert all(len(v) == 2 for v in hist.values())
    with pytest.raises(KeyError, match="'val_mse' is not in this history; it holds 'loss', "
                                       "'accuracy'"):
        hist["val_mse"]
    assert hist.get("val_mse") is None and "val_loss" in hist


@pytest.mark.parametrize("end", ["epochs run out", "a callback stops"])
def test_restore_best_weights_whatever_ends_the_fit(tmp_path, end):
    """hunt-01: the model, and the final checkpoint, hold the best epoch's weights also when
    the epochs run out or a callback ends the fit before patience does."""
    X, y = _problem()
    Xv, yv = _problem(40, seed=1)
    stop = accelnn.EarlyStopping("val_loss", patience=1000, restore_best_weights=True)
    epochs, cbs = (300, []) if end == "epochs run out" else (1000, [Recorder(stop_after=300)])
    model = accelnn.MLP([3, 32, 1], "relu", seed=0, backend="numpy", dtype="float64")
    hist = model.fit(X, y, epochs=epochs, lr=0.5, validation_data=(Xv, yv),
                     early_stopping=stop, callbacks=cbs, checkpoint=tmp_path / "ck.npz")
    val = np.array(hist["val_loss"])
    assert hist.epochs == 300 and not hist.stopped_early
    best = int(val.argmin())
    assert best < 299 and val[best] < val[-1]  # the overfitting this test relies on
    assert model.loss(Xv, yv) == pytest.approx(val[best], rel=1e-12)
    # The weights are those of the best epoch itself: a fresh run of best + 1 epochs.
    again = accelnn.MLP([3, 32, 1], "relu", seed=0, backend="numpy", dtype="float64")
    again.fit(X, y, epochs=best + 1, lr=0.5)
    assert _weights_equal(model.get_weights(), again.get_weights())
    assert _weights_equal(accelnn.MLP.load(tmp_path / "ck.npz").get_weights(),
                          model.get_weights())


def test_without_restore_best_weights_the_last_epoch_stays():
    X, y = _problem()
    Xv, yv = _problem(40, seed=1)
    stop = accelnn.EarlyStopping("val_loss", patience=1000, restore_best_weights=False)
    model = accelnn.MLP([3, 32, 1], "relu", seed=0, backend="numpy", dtype="float64")
    hist = model.fit(X, y, epochs=300, lr=0.5, validation_data=(Xv, yv), early_stopping=stop)
    assert model.loss(Xv, yv) == pytest.approx(hist["val_loss"][-1], rel=1e-12)
