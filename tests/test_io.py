"""save/load: round trip without pickle, atomic writes, bad files rejected with a reason."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import numpy as np
import pytest

import accelnn
from accelnn import files
from tests.conftest import max_rel_err


@pytest.fixture
def trained():
    X, y = accelnn.datasets.make_flower(60, seed=0)
    model = accelnn.MLP([2, 5, 1], "tanh", seed=3, dtype="float64", l2=0.01, backend="numpy")
    model.fit(X, np.where(y == 1, "petal", "gap"), epochs=20, batch_size=16)
    return model, X


def test_round_trip(tmp_path, trained, backend):
    model, X = trained
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = accelnn.MLP.load(path, backend=backend)
    assert loaded.layer_sizes == model.layer_sizes and loaded.l2 == model.l2
    assert loaded.dtype == model.dtype and loaded.head is model.head
    assert [a.name for a in loaded.activations] == ["tanh"]
    assert loaded.classes_.tolist() == ["gap", "petal"]
    for (W0, b0), (W1, b1) in zip(model.get_weights(), loaded.get_weights()):
        assert np.array_equal(W0, W1) and np.array_equal(b0, b1)
    assert loaded.state.rng.bit_generator.state == model.state.rng.bit_generator.state
    # Same weights; another backend's arithmetic may differ in the last bits.
    assert max_rel_err(backend.to_numpy(loaded.predict_proba(X)), model.predict_proba(X)) < 1e-12
    with np.load(path, allow_pickle=False) as data:  # loads without pickle
        assert set(data.files) == {"header", "W1", "b1", "W2", "b2", "classes"}


def test_save_leaves_no_temporary_files(tmp_path, trained):
    model, _ = trained
    model.save(tmp_path / "m.npz")
    model.save(tmp_path / "m.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    for key, value in changes.items():
        if key.startswith("header_"):
            header[key[7:]] = value
        elif value is None:
            del arrays[key]
        else:
            arrays[key] = value
    arrays["header"] = np.array(json.dumps(header))
    np.savez(path, **arrays)


@pytest.mark.parametrize("change, message", [
    ({"header_format_version": 99}, "format version 99 is not supported"),
    ({"header_format": "other"}, "not an accelnn model file \\(format 'other'\\)"),
    ({"W2": None}, "arrays missing for W2"),
    ({"W1": np.zeros((3, 5))}, r"layer 1 W: expected shape \(2, 5\), got \(3, 5\)"),
    ({"b1": np.full(5, np.nan)}, "layer 1 b contains NaN or Inf"),
    ({"header_hidden_activations": ["swish"]}, "bad model file: ValueError: unknown activation"),
    ({"header_layer_sizes": None}, "bad model file"),
    ({"header": None}, "no header"),
    ({"header_epoch": -1}, r"epoch must be an integer in \[0, 2\*\*62\), got -1"),
    ({"header_epoch": 1.5}, r"epoch must be an integer in \[0, 2\*\*62\), got 1.5"),
    ({"classes": np.array(["a", "b", "c"])}, r"classes must be 2 distinct labels, one per "
                                             r"decision of 1 output unit, got an array of "
                                             r"shape \(3,\)"),
    ({"classes": np.array(["a"])}, "classes must be 2 distinct labels"),
    ({"classes": np.array(["a", "a"])}, "classes must be 2 distinct labels"),
])
def test_tampered_files_are_rejected(tmp_path, trained, change, message):
    model, _ = trained
    path = tmp_path / "m.npz"
    model.save(path)
    if "header" in change:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "header"}
        np.savez(path, **arrays)
    else:
        _rewrite(path, **change)
    with pytest.raises(ValueError, match=message):
        accelnn.MLP.load(path)


def test_truncated_and_garbage_files_are_rejected(tmp_path, trained):
    model, _ = trained
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable accelnn model file"):
        accelnn.MLP.load(path)
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a readable accelnn model file"):
        accelnn.MLP.load(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("header.npy", b"junk")
    with pytest.raises(ValueError, match="corrupt header"):
        accelnn.MLP.load(path)


def test_pickled_arrays_are_refused(tmp_path, trained):
    model, _ = trained
    path = tmp_path / "m.npz"
    model.save(path)
    _rewrite(path, classes=np.array([object(), object()], dtype=object))
    with pytest.raises(ValueError, match="not a readable accelnn model file"):
        accelnn.MLP.load(path)


def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path, trained):
    """rel-15: re-saving a 0600 checkpoint left it 0644."""
    model, _ = trained
    path = tmp_path / "m.npz"
    model.save(path)
    os.chmod(path, 0o600)
    model.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_an_interrupt_after_the_rename_reaches_the_caller(tmp_path, trained, monkeypatch):
    """rel-10: a Ctrl-C landing just after the rename was replaced by a FileNotFoundError from
    the cleanup. Now the interrupt reaches the caller, the new file is whole and no temporary
    file is left."""
    model, _ = trained
    path = tmp_path / "m.npz"
    real_replace = files.os.replace

    def replace_then_interrupt(a, b):
        real_replace(a, b)
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    assert all(np.array_equal(a, b) for pa, pb in zip(accelnn.MLP.load(path).get_weights(),
                                                      model.get_weights())
               for a, b in zip(pa, pb))


def test_a_crashed_save_leaves_nothing_the_next_save_keeps(tmp_path, trained, monkeypatch):
    """rel-11: a crash mid-save left an .accelnn-*.tmp file that no later save removed."""
    model, _ = trained
    path = tmp_path / "m.npz"

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        model.save(path)
    monkeypatch.undo()
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


LABELS = {
    "int64": np.array([10, 20, 30]),
    "uint8": np.array([1, 2, 3], dtype=np.uint8),
    "float": np.array([0.5, 1.5, 2.5]),
    "str": np.array(["cat", "dog", "emu"]),
    "bytes": np.array([b"x", b"y", b"z"]),
    "object int": np.array([10, 20, 30], dtype=object),
    "object str": np.array(["cat", "dog", "emu"], dtype=object),
    "object bytes": np.array([b"x", b"y", b"z"], dtype=object),
    "object float": np.array([0.5, 1.5, 2.5], dtype=object),
    "bool": np.array([False, True]),
}


@pytest.mark.parametrize("kind", list(LABELS))
def test_labels_survive_a_save_exactly(tmp_path, kind):
    rng = np.random.default_rng(0)
    labels = LABELS[kind]
    X, y = rng.normal(size=(30, 2)), labels[rng.integers(0, len(labels), 30)]
    model = accelnn.MLP([2, 4, len(labels) if len(labels) > 2 else 1], "tanh", seed=0,
                        dtype="float64", backend="numpy")
    model.fit(X, y, epochs=20, lr=0.5)
    model.save(tmp_path / "m.npz")
    loaded = accelnn.MLP.load(tmp_path / "m.npz", backend="numpy")
    assert loaded.classes_.dtype == model.classes_.dtype
    assert [type(c) for c in loaded.classes_] == [type(c) for c in model.classes_]
    assert loaded.classes_.tolist() == model.classes_.tolist()
    before, after = np.asarray(model.predict(X)), np.asarray(loaded.predict(X))
    assert after.dtype == before.dtype and after.tolist() == before.tolist()
    loaded.fit(X, y, epochs=1)  # its own labels are its classes


def test_files_without_the_classes_dtype_still_load(tmp_path, trained):
    """Files written before the header declared the classes' dtype (text labels as <U)."""
    model, X = trained
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    del header["classes_dtype"], header["classes_object"]
    arrays["header"] = np.array(json.dumps(header))
    np.savez(tmp_path / "m.npz", **arrays)
    loaded = accelnn.MLP.load(tmp_path / "m.npz")
    assert loaded.classes_.tolist() == ["gap", "petal"]
    assert np.array_equal(loaded.predict(X), model.predict(X))
