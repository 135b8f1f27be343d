"""MLP.feature_names_in_: kept from a pandas DataFrame's column names, checked at every later
call, saved with the model (pandas is optional: these tests skip without it)."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn

pd = pytest.importorskip("pandas", reason="feature names come from a pandas DataFrame")


def _frame(columns=("height", "weight", "age"), m=30):
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(m, len(columns))), columns=list(columns))


def test_names_are_kept_checked_and_saved(tmp_path):
    frame = _frame()
    y = (frame["height"] > 0).astype(int)
    model = accelnn.MLP([3, 4, 1], seed=0, backend="numpy")
    assert not hasattr(model, "feature_names_in_")
    model.fit(frame, y, epochs=2)
    assert model.feature_names_in_.tolist() == ["height", "weight", "age"]
    assert model.feature_names_in_.dtype == object
    np.testing.assert_array_equal(model.predict(frame), model.predict(frame.to_numpy()))
    swapped = frame[["weight", "height", "age"]]
    for call in (model.predict, model.predict_proba, model.forward):
        with pytest.raises(ValueError, match="the order differs"):
            call(swapped)
    with pytest.raises(ValueError, match=r"unseen at fit time: \['size'\]; names seen at fit "
                                         r"time, missing now: \['height'\]"):
        model.loss(frame.rename(columns={"height": "size"}), y)
    before = model.get_weights()
    with pytest.raises(ValueError, match="feature names differ"):
        model.fit(swapped, y, epochs=1)  # refused before anything changes
    assert all(np.array_equal(a, b) for pa, pb in zip(before, model.get_weights())
               for a, b in zip(pa, pb))
    model.save(tmp_path / "m.npz")
    loaded = accelnn.MLP.load(tmp_path / "m.npz")
    assert loaded.feature_names_in_.tolist() == ["height", "weight", "age"]
    with pytest.raises(ValueError, match="feature names differ"):
        loaded.predict(swapped)


def test_tables_without_string_names_have_none():
    model = accelnn.MLP([3, 1], output="identity", seed=0, backend="numpy")
    model.fit(pd.DataFrame(np.ones((4, 3))), np.zeros(4))  # pandas numbers the columns
    assert not hasattr(model, "feature_names_in_")
    with pytest.raises(TypeError, match="column names must all be strings"):
        model.predict(pd.DataFrame(np.ones((2, 3)), columns=["a", 1, "c"]))


def test_a_file_with_bad_feature_names_is_refused(tmp_path):
    import json

    frame = _frame()
    model = accelnn.MLP([3, 1], output="identity", seed=0, backend="numpy")
    model.fit(frame, np.zeros(30))
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    header["feature_names"] = ["height", "weight"]
    arrays["header"] = np.array(json.dumps(header))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad.npz: bad model file: .*feature_names must be 3 "
                                         r"strings"):
        accelnn.MLP.load(tmp_path / "bad.npz")
