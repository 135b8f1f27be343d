"""Fuzzing MLP.load with damaged copies of a real checkpoint (an Adam fit with a cosine
schedule and text labels): truncations, flipped bytes, edits of the JSON header (values of
other types, huge and negative numbers, deep nesting, removed and added keys) and replaced or
removed arrays. Every outcome is a ValueError naming the file, or a model that loads whole:
finite weights and optimizer state, usable, and written back by save to the same model.

The default run is derandomized with a small example budget (a few seconds); the `slow` runs
(pytest -m slow) try many more."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

import accelnn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BUDGETS = [pytest.param(80, id="quick"), pytest.param(2000, id="long", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.array(["ant", "bee", "cat"])[rng.integers(0, 3, 40)]
    model = accelnn.MLP([3, 4, 3], "tanh", seed=0, dtype="float64", backend="numpy")
    model.fit(X, y, epochs=3, optimizer="adam", batch_size=8, lr_schedule="cosine",
              checkpoint=folder / "ck.npz")
    data = (folder / "ck.npz").read_bytes()
    with np.load(folder / "ck.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays.pop("header")))
    return SimpleNamespace(folder=folder, X=X, data=data, arrays=arrays, header=header,
                           paths=_paths(header))


def _paths(value, at=()) -> list[tuple]:
    """Every place in a JSON value: the keys and indices leading to it."""
    found = [at] if at else []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*at, i))
    return found


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb))


def _check(sample, data: bytes) -> None:
    path = sample.folder / "fuzzed.npz"
    path.write_bytes(data)
    try:
        model = accelnn.MLP.load(path, backend="numpy")
    except ValueError as exc:
        assert str(exc).startswith(f"{path}: "), exc
        return
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for pair in weights for w in pair)
    for value in model.state.opt_state.values():
        if isinstance(value, list):
            assert all(np.isfinite(a).all() for a in value)
    if model.head is not None:
        with np.errstate(over="ignore"):
            model.predict(sample.X)
    model.save(sample.folder / "again.npz")
    again = accelnn.MLP.load(sample.folder / "again.npz", backend="numpy")
    assert again.get_config() == model.get_config() and _same(again.get_weights(), weights)
    assert again.state.rng.bit_generator.state == model.state.rng.bit_generator.state
    assert (again.classes_ is None) == (model.classes_ is None)
    if model.classes_ is not None:
        assert again.classes_.tolist() == model.classes_.tolist()


def _npz(arrays: dict, header_text: str) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, header=np.array(header_text), **arrays)
    return buf.getvalue()


NESTED = "\x00nested\x00"  # stands for a deeply nested list in the header text

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
              st.sampled_from([-1, 0, 1, 2**31, 2**62, 2**63, 2**64, 2**128, 10**30, -2**63]),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
              st.sampled_from(["PCG64", "adam", "sgd", "cosine", "float32", "<U3", "relu"]),
              st.just(NESTED)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6)


@pytest.mark.parametrize("budget", BUDGETS)
def test_truncated_files(sample, budget):
    @settings(SETTINGS, max_examples=budget)
    @given(st.integers(0, len(sample.data) - 1))
    def run(n):
        _check(sample, sample.data[:n])

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_flipped_bytes(sample, budget):
    size = len(sample.data)

    @settings(SETTINGS, max_examples=budget)
    @given(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=1,
                    max_size=8))
    def run(flips):
        data = bytearray(sample.data)
        for at, mask in flips:
            data[at] ^= mask
        _check(sample, bytes(data))

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_header_edits(sample, budget):
    places = st.sampled_from([(key,) for key in sample.header]) | st.sampled_from(sample.paths)

    @settings(SETTINGS, max_examples=budget)
    @given(st.lists(st.tuples(places, st.sampled_from(["set", "delete", "add"]), json_values),
                    min_size=1, max_size=4),
           st.integers(50, 5000))
    def run(edits, depth):
        header = json.loads(json.dumps(sample.header))
        for path, how, value in edits:
            parent = header
            try:
                for key in path[:-1]:
                    parent = parent[key]
                if how == "set":
                    parent[path[-1]] = value
                elif how == "delete":
                    del parent[path[-1]]
                elif isinstance(parent, dict):
                    parent[f"extra{len(parent)}"] = value
            except (KeyError, IndexError, TypeError):
                pass  # an earlier edit removed or replaced this place
        text = json.dumps(header).replace(json.dumps(NESTED), "[" * depth + "]" * depth)
        _check(sample, _npz(sample.arrays, text))

    run()


member_arrays = st.tuples(
    st.sampled_from(["<f8", "<f4", ">f8", "<i8", "|u1", "|b1", "<U3", "|S2", "<c16", "<M8[D]"]),
    st.lists(st.integers(0, 5), max_size=3),
    st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf, 1e300, -1e-300]))


@pytest.mark.parametrize("budget", BUDGETS)
def test_replaced_and_removed_arrays(sample, budget):
    names = sorted(sample.arrays)

    @settings(SETTINGS, max_examples=budget)
    @given(st.lists(st.tuples(st.sampled_from(names), st.none() | member_arrays),
                    min_size=1, max_size=3))
    def run(edits):
        arrays = dict(sample.arrays)
        for name, replacement in edits:
            if replacement is None:
                arrays.pop(name, None)
                continue
            dtype, shape, fill = replacement
            with np.errstate(invalid="ignore", over="ignore"):
                arrays[name] = np.full(shape, fill).astype(dtype)
        _check(sample, _npz(arrays, json.dumps(sample.header)))

    run()
