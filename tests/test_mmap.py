"""fit on a memory-mapped .npy (np.load(path, mmap_mode="r")) streams mini-batches from the
file: the same training as from memory, and (slow test) a 2 GB file trained on with the
process's anonymous memory (RssAnon: the heap, not the file's page cache) under 500 MB."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import accelnn


def test_memory_map_trains_exactly_as_memory(backend, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 8))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    runs = []
    for data in (X, np.load(tmp_path / "X.npy", mmap_mode="r")):
        model = accelnn.MLP([8, 16, 1], "relu", seed=3, dtype="float64", backend=backend)
        hist = model.fit(data, y, epochs=3, batch_size=64, optimizer="adam", lr=0.01,
                         validation_split=0.2, metrics=("accuracy",))
        runs.append((model.get_weights(), hist.history))
    (w_mem, h_mem), (w_map, h_map) = runs
    assert h_map == h_mem
    for (Wa, ba), (Wb, bb) in zip(w_mem, w_map):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)


class _RecordingMap(np.memmap):
    """A memory map that remembers the largest piece (in rows) it has handed out."""

    largest = 0

    def __getitem__(self, key):
        out = super().__getitem__(key)
        if isinstance(out, np.ndarray) and out.ndim == 2:
            _RecordingMap.largest = max(_RecordingMap.largest, out.shape[0])
        return out


def test_a_memory_map_is_read_a_piece_at_a_time(tmp_path):
    """Streaming reads batches (and chunks for the checks), never the whole file."""
    rows = 70_000  # more than one chunk of the finite check (65,536 rows)
    rng = np.random.default_rng(1)
    np.save(tmp_path / "X.npy", rng.normal(size=(rows, 4)))
    X = np.load(tmp_path / "X.npy", mmap_mode="r").view(_RecordingMap)
    y = rng.integers(0, 2, rows)
    _RecordingMap.largest = 0
    model = accelnn.MLP([4, 8, 1], "relu", seed=0, backend="numpy")
    model.fit(X, y, epochs=1, batch_size=512, validation_split=0.1, metrics=("accuracy",))
    assert 0 < _RecordingMap.largest <= 65_536 < rows


def test_a_memory_map_with_nan_is_rejected_before_training(tmp_path):
    X = np.random.default_rng(2).normal(size=(70_000, 3))
    X[66_000, 2] = np.nan  # in the second chunk of the check
    np.save(tmp_path / "X.npy", X)
    model = accelnn.MLP([3, 4, 1], seed=0, backend="numpy")
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"X contains NaN or Inf \(row 66000, column 2\)"):
        model.fit(np.load(tmp_path / "X.npy", mmap_mode="r"), np.zeros(70_000), batch_size=64)
    assert all(np.array_equal(a, b) for pa, pb in zip(before, model.get_weights())
               for a, b in zip(pa, pb))
    assert model.head is None


def test_a_memory_map_too_large_for_float32_is_rejected_before_training(tmp_path):
    X = np.ones((100, 2))
    X[42, 1] = 1e300
    np.save(tmp_path / "X.npy", X)
    model = accelnn.MLP([2, 1], dtype="float32", backend="numpy")
    with pytest.raises(ValueError, match=r"values too large for float32 \(row 42, column 1\)"):
        model.fit(np.load(tmp_path / "X.npy", mmap_mode="r"), np.zeros(100), batch_size=10)
    assert model.head is None and model.state.optimizer is None


ROWS, FEATURES = 2_000_000, 256  # float32: 2.05 GB
LIMIT_MB = 500

# Run in a fresh interpreter: a thread samples RssAnon from /proc/self/status every 5 ms
# while the main thread fits one epoch on the memory-mapped file.
FIT_SCRIPT = r"""
import json, sys, threading, time
import numpy as np
import accelnn

def rss_anon_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024

folder, backend = sys.argv[1], sys.argv[2]
X = np.load(folder + "/X.npy", mmap_mode="r")
y = np.load(folder + "/y.npy")
model = accelnn.MLP([X.shape[1], 32, 1], "relu", "sigmoid", seed=0, dtype="float32",
                    backend=backend)
model.forward(X[:4096])  # the backend's first-call costs (imports, JIT) before measuring
before = rss_anon_mb()
peak, done = [before], threading.Event()

def sample():
    while not done.is_set():
        peak.append(rss_anon_mb())
        time.sleep(0.005)

sampler = threading.Thread(target=sample)
sampler.start()
t0 = time.perf_counter()
hist = model.fit(X, y, epochs=1, batch_size=4096, optimizer="adam", lr=0.003,
                 metrics=("accuracy",), validation_split=0.1)
seconds = time.perf_counter() - t0
done.set()
sampler.join()
print(json.dumps({"before_mb": before, "peak_mb": max(peak), "seconds": seconds,
                  "accuracy": hist["accuracy"][-1], "val_accuracy": hist["val_accuracy"][-1],
                  "samples": len(peak)}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_fit_on_a_2gb_memory_map_keeps_anonymous_memory_under_500mb(backend, tmp_path):
    if backend.name == "cupy":
        pytest.skip("measures host memory of the CPU backends")
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32,
                                  shape=(ROWS, FEATURES))
    rng = np.random.default_rng(0)
    y = np.empty(ROWS, dtype=np.int8)
    for lo in range(0, ROWS, 65536):
        chunk = rng.standard_normal((min(65536, ROWS - lo), FEATURES), dtype=np.float32)
        X[lo:lo + len(chunk)] = chunk
        y[lo:lo + len(chunk)] = chunk[:, 0] + chunk[:, 1] > 0
    X.flush()
    del X
    np.save(tmp_path / "y.npy", y)
    size_gb = (tmp_path / "X.npy").stat().st_size / 1e9
    out = subprocess.run([sys.executable, "-c", FIT_SCRIPT, str(tmp_path), backend.name],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.splitlines()[-1])
    print(f"\n{backend.name}: one epoch on a {size_gb:.2f} GB memory map in "
          f"{r['seconds']:.1f} s, accuracy {r['accuracy']:.3f}; RssAnon {r['before_mb']:.0f} "
          f"MB before fit, peak {r['peak_mb']:.0f} MB ({r['samples']} samples)")
    assert size_gb >= 2.0
    assert r["peak_mb"] < LIMIT_MB
    assert r["accuracy"] > 0.9
