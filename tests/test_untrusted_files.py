"""Model files are untrusted input: MLP.load, fit(resume_from=...) and `accelnn predict` raise
ValueError naming the file and the problem (never another exception), check every header value
and every array's declared shape and size before reading data, read only the members they know,
and change nothing before the whole file has been checked."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
import zipfile

import numpy as np
import pytest

import accelnn
from accelnn import network


def _fit_checkpoint(path, optimizer="adam", dtype="float64"):
    """A small checkpoint written by fit: 3 epochs, cosine schedule (a run record with state)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    model = accelnn.MLP([3, 4, 3], "tanh", seed=0, dtype=dtype, backend="numpy")
    model.fit(X, y, epochs=3, optimizer=optimizer, batch_size=8, lr_schedule="cosine",
              checkpoint=path)
    return model, X, y


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    model, X, y = _fit_checkpoint(path)
    return path, model, X, y


def _arrays(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _rewrite(src, dst, text=None, arrays=None, **changes):
    """A copy of the .npz at src with its header edited (`changes`) or replaced (`text`) and
    some arrays replaced (`arrays`)."""
    a = _arrays(src)
    header = json.loads(str(a["header"]))
    header.update(changes)
    a["header"] = np.array(json.dumps(header) if text is None else text)
    a.update(arrays or {})
    np.savez(dst, **a)
    return dst


def _rejected(path, match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        accelnn.MLP.load(path, backend="numpy")
    assert str(info.value).startswith(f"{path}: ")
    return str(info.value)


def test_a_plain_npy_file_is_named_by_load_resume_and_predict(tmp_path, checkpoint, capsys):
    from accelnn.cli import main

    _, model, X, y = checkpoint
    path = tmp_path / "weights.npy"
    np.save(path, np.zeros((3, 3)))
    message = rf"^{re.escape(str(path))}: not an accelnn model file: it holds one NumPy array"
    _rejected(path, message)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, epochs=9, resume_from=path)
    np.savetxt(tmp_path / "d.csv", X, delimiter=",")
    assert main(["predict", str(path), str(tmp_path / "d.csv"), "--header", "no"]) == 2
    assert f"accelnn predict: error: {path} is not a model file" in capsys.readouterr().err
    with pytest.raises(TypeError, match="path must be a file path"):
        accelnn.MLP.load(123)


def _rng(change):
    def edit(header):
        state = json.loads(json.dumps(header["rng_state"]))
        change(state)
        return {"rng_state": state}
    return edit


def _set(state, key, value):
    state["state"][key] = value


HEADER_EDITS = [
    (_rng(lambda s: _set(s, "state", -1)), "rng_state must be the state of a PCG64"),
    (_rng(lambda s: _set(s, "inc", 2**200)), "rng_state must be the state of a PCG64"),
    (_rng(lambda s: s.update(bit_generator="MT19937")), "rng_state must be the state of a PCG64"),
    (_rng(lambda s: s.update(has_uint32=2)), "rng_state must be the state of a PCG64"),
    ({"rng_state": "seed"}, "rng_state must be a PCG64 state, got 'seed'"),
    ({"optimizer": [1, 2]}, r"optimizer must be null or \{name, params\}, got \[1, 2\]"),
    ({"optimizer": {"name": "lbfgs", "params": {}}}, "unknown optimizer 'lbfgs'"),
    ({"optimizer": {"name": "adam", "params": {"lr": "0.1"}}},
     "optimizer adam parameter lr must be a number, got '0.1'"),
    ({"optimizer": {"name": "adam", "params": {"amsgrad": True}}},
     "optimizer adam has no parameter 'amsgrad'"),
    ({"optimizer": {"name": "adam", "params": {"beta1": 1.5}}}, "beta1 must be a number in"),
    ({"optimizer": {"name": "sgd", "params": {"momentum": 0.9, "nesterov": "yes"}}},
     "optimizer sgd parameter nesterov must be true or false, got 'yes'"),
    ({"optimizer_scalars": {"t": -1}}, r"optimizer state t must be an integer in \[0, 2\*\*62\)"),
    ({"optimizer_scalars": {"t": 2**62}}, r"optimizer state t must be an integer in"),
    ({"optimizer_scalars": {}}, "optimizer_scalars lacks t"),
    ({"optimizer_scalars": [3]}, "optimizer_scalars must be a dict, got"),
    ({"layer_sizes": [3, 10**12, 3]}, r"layer 1 W: expected shape \(3, 1000000000000\), got "
                                      r"\(3, 4\)"),
    ({"layer_sizes": [3, "4", 3]}, "layer_sizes must list at least two positive integers"),
    ({"layer_sizes": {"0": 3}}, "layer_sizes must be a list of integers, got"),
    ({"hidden_activations": "tanh"}, "hidden_activations must be a list of names, got 'tanh'"),
    ({"hidden_activations": [{}]}, "activation must be a name"),
    ({"output": 5}, "output must be a name, got 5"),
    ({"output": "hinge"}, "unknown output 'hinge'"),
    ({"dtype": ["<f8"]}, r"dtype must be float32 or float64, got \['<f8'\]"),
    ({"dtype": "float16"}, "dtype must be float32 or float64, got 'float16'"),
    ({"l2": "0"}, "l2 must be a number, got '0'"),
    ({"l2": -1}, r"l2 must be a number in \[0.0, inf\]"),
    ({"split_seed": -5}, r"split_seed must be an integer in \[0, 2\*\*63\), got -5"),
    ({"split_seed": 2**63}, r"split_seed must be an integer in \[0, 2\*\*63\)"),
    ({"split_seed": 1.0}, r"split_seed must be an integer in \[0, 2\*\*63\), got 1.0"),
    ({"epoch": 2**62}, r"epoch must be an integer in \[0, 2\*\*62\)"),
    ({"samples_seen": True}, r"samples_seen must be an integer in \[0, 2\*\*62\), got True"),
    ({"run": [1]}, r"run must be null or \{schedule, schedule_state, lr\}, got \[1\]"),
    ({"run": {"schedule": "warmup", "schedule_state": {}, "lr": 0.1}},
     "run: unknown schedule 'warmup'"),
    ({"run": {"schedule": "cosine", "schedule_state": {"t_max": -1}, "lr": 0.1}},
     "t_max must be an integer > 0, got -1"),
    ({"run": {"schedule": "cosine", "schedule_state": {}, "lr": 0.1}},
     r"the cosine schedule's state must be a dict with the keys \['t_max'\], got \{\}"),
    ({"run": {"schedule": "adaptive", "lr": 0.1,
              "schedule_state": {"scale": 1.0, "best": float("nan"), "bad": 0}}},
     "best must be a number or inf, got nan"),
    ({"run": {"schedule": "cosine", "schedule_state": {"t_max": 3}, "lr": 0}},
     "lr must be a number in"),
    ({"format_version": True}, "format version True is not supported"),
    ({"classes_object": "yes"}, "classes_object must be true or false, got 'yes'"),
    ({"classes_dtype": "<i1"}, "classes: the header declares dtype '<i1', the array has <i8"),
    ({"classes_dtype": "no such dtype"}, "classes: the header declares dtype 'no such dtype'"),
]


@pytest.mark.parametrize("edit, message", HEADER_EDITS)
def test_header_values_of_a_wrong_type_or_range_are_named(tmp_path, checkpoint, edit,
                                                          message):
    src = checkpoint[0]
    header = json.loads(str(_arrays(src)["header"]))
    changes = edit(header) if callable(edit) else edit
    _rejected(_rewrite(src, tmp_path / "bad.npz", **changes), message)


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "corrupt header: RecursionError"),
    ('{"format": "accelnn-mlp", "format_version": 1, "epoch": 1' + "0" * 5000 + "}",
     "corrupt header: ValueError: Exceeds the limit"),
    (" " * (1 << 20) + "{}", r"corrupt header: expected a text of at most 1048576 characters"),
    ('"accelnn-mlp"', r"not an accelnn model file \(format None\)"),
])
def test_malformed_header_text_is_named(tmp_path, checkpoint, text, message):
    _rejected(_rewrite(checkpoint[0], tmp_path / "bad.npz", text=text), message)


def test_split_seed_beyond_json_numbers_is_named(tmp_path, checkpoint):
    src = checkpoint[0]
    header = str(_arrays(src)["header"])
    text = re.sub(r'"split_seed": \d+', '"split_seed": 1e400', header)
    _rejected(_rewrite(src, tmp_path / "bad.npz", text=text),
              r"split_seed must be an integer in \[0, 2\*\*63\), got inf")


@pytest.mark.parametrize("optimizer, member, value, message", [
    ("adam", "opt.m.0", np.nan, "optimizer state opt.m.0 contains NaN or Inf"),
    ("adam", "opt.v.1", -1.0, r"optimizer state opt.v.1 \(a mean of squared gradients\) has "
                              r"negative values"),
    ("rmsprop", "opt.sq.2", -1e-30, r"optimizer state opt.sq.2 \(a mean of squared"),
    ("momentum", "opt.velocity.3", np.inf, "optimizer state opt.velocity.3 contains NaN or Inf"),
    ("sgd", "W2", 1e300, "layer 2 W has values too large for float32"),
])
def test_optimizer_state_and_weights_out_of_range_are_refused(tmp_path, optimizer, member,
                                                              value, message):
    src = tmp_path / "ck.npz"
    _fit_checkpoint(src, optimizer, dtype="float32")
    a = _arrays(src)
    bad = a[member].astype(np.float64)
    bad.flat[0] = value
    _rejected(_rewrite(src, tmp_path / "bad.npz", arrays={member: bad}), message)


def _peak_while(fn) -> int:
    """Peak bytes traced (Python and NumPy allocations) while fn runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _load_or_error(path):
    try:
        accelnn.MLP.load(path, backend="numpy")
    except ValueError:
        pass


def test_declared_sizes_are_checked_before_anything_is_allocated(tmp_path, checkpoint):
    src = checkpoint[0]
    # a header declaring a 120 MB layer next to the small arrays
    huge = _rewrite(src, tmp_path / "huge.npz", layer_sizes=[3, 10**7, 3])
    _rejected(huge, r"layer 1 W: expected shape \(3, 10000000\), got \(3, 4\)")
    assert _peak_while(lambda: _load_or_error(huge)) < 1 << 20
    # ... with a W1 whose .npy header agrees, but whose member holds 96 bytes
    a = _arrays(src)
    header = json.loads(str(a.pop("header")))
    header["layer_sizes"] = [3, 10**7, 3]
    lying = tmp_path / "lying.npz"
    with zipfile.ZipFile(lying, "w") as z:
        z.writestr("header.npy", _npy(np.array(json.dumps(header))))
        w1 = _npy(a.pop("W1"))
        z.writestr("W1.npy", w1.replace(b"(3, 4)", b"(3, 10000000)"))
        for k, v in a.items():
            z.writestr(f"{k}.npy", _npy(v))
    assert _peak_while(lambda: _load_or_error(lying)) < 1 << 20
    _rejected(lying, r"not a readable accelnn model file \(W1.npy: its header declares "
                     r"240000000 bytes of data")


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_unknown_members_are_never_read(tmp_path, checkpoint):
    src = checkpoint[0]
    path = tmp_path / "junk.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in _arrays(src).items():
            z.writestr(f"{k}.npy", _npy(v))
        with z.open("junk.npy", "w", force_zip64=True) as f:  # 256 MiB of zeros
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (2**25,)})
            chunk = bytes(1 << 24)
            for _ in range(16):
                f.write(chunk)
    assert path.stat().st_size < 1 << 20
    assert _peak_while(lambda: accelnn.MLP.load(path, backend="numpy")) < 4 << 20
    # a damaged member that is not the model's is not even looked at
    with zipfile.ZipFile(path, "w") as z:
        for k, v in _arrays(src).items():
            z.writestr(f"{k}.npy", _npy(v))
        z.writestr("notes.npy", b"\x93NUMPY" + bytes(100))
    data = bytearray(path.read_bytes())
    at = data.rindex(b"\x93NUMPY" + bytes(100))
    data[at + 50] ^= 0xFF  # its CRC no longer matches
    path.write_bytes(bytes(data))
    loaded = accelnn.MLP.load(path, backend="numpy")
    assert loaded.epoch_ == checkpoint[1].epoch_


def test_damaged_members_and_other_zip_methods(tmp_path, checkpoint):
    src, model = checkpoint[:2]
    # deflated (numpy.savez_compressed) is read as well
    np.savez_compressed(tmp_path / "z.npz", **_arrays(src))
    loaded = accelnn.MLP.load(tmp_path / "z.npz", backend="numpy")
    assert all(np.array_equal(a, b) for pa, pb in zip(loaded.get_weights(), model.get_weights())
               for a, b in zip(pa, pb))
    # other compression methods are refused by name
    path = tmp_path / "bz.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as z:
        for k, v in _arrays(src).items():
            z.writestr(f"{k}.npy", _npy(v))
    _rejected(path, r"corrupt header: header.npy: compression method 12 is not supported")
    # a flipped byte in W1's data fails its CRC
    data = bytearray(src.read_bytes())
    w1 = _npy(_arrays(src)["W1"])
    at = data.index(w1) + len(w1) - 3
    data[at] ^= 0x01
    (tmp_path / "crc.npz").write_bytes(bytes(data))
    _rejected(tmp_path / "crc.npz",
              r"not a readable accelnn model file \(W1.npy: BadZipFile: Bad CRC-32")
    # Python objects are never unpickled
    path = _rewrite(src, tmp_path / "obj.npz",
                    arrays={"classes": np.array([object()] * 3, dtype=object)})
    _rejected(path, r"classes.npy holds Python objects \(dtype object\), which are never "
                    r"unpickled")


def test_load_builds_no_model_before_the_file_is_checked(tmp_path, checkpoint, monitored):
    src = checkpoint[0]
    bad = _rewrite(src, tmp_path / "bad.npz", arrays={"opt.v.0": -np.ones((3, 4))})
    _rejected(bad, "opt.v.0")
    assert monitored == []  # no initial weights were drawn
    accelnn.MLP.load(src, backend="numpy")
    assert len(monitored) == 1


@pytest.fixture
def monitored(monkeypatch):
    calls = []
    init = network.Network.init_params

    def spy(self, rng):
        calls.append(self.layer_sizes)
        return init(self, rng)

    monkeypatch.setattr(network.Network, "init_params", spy)
    return calls


@pytest.mark.parametrize("arrays, changes", [
    ({"opt.v.0": -np.ones((3, 4))}, {}),
    ({}, {"split_seed": -5}),
    ({}, {"run": {"schedule": "cosine", "schedule_state": {"t_max": "3"}, "lr": 0.1}}),
])
def test_a_tampered_resume_changes_nothing(tmp_path, checkpoint, arrays, changes):
    src, _, X, y = checkpoint
    model = accelnn.MLP([3, 4, 3], "tanh", seed=1, dtype="float64", backend="numpy")
    model.fit(X, y, epochs=2, optimizer="momentum")
    weights, opt = model.get_weights(), model.state.optimizer
    state = model.state.rng.bit_generator.state
    bad = _rewrite(src, tmp_path / "bad.npz", arrays=arrays, **changes)
    with pytest.raises(ValueError, match=re.escape(f"{bad}: bad model file")):
        model.fit(X, y, epochs=9, resume_from=bad)
    assert model.state.optimizer is opt and model.epoch_ == 2
    assert model.state.rng.bit_generator.state == state
    assert all(np.array_equal(a, b) for pa, pb in zip(weights, model.get_weights())
               for a, b in zip(pa, pb))
