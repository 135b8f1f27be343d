"""One model shared by threads: inference from many threads at once gives the serial results bit
for bit, a prediction during fit neither changes the fit nor sees a half-updated set of
weights, and inference leaves no per-call buffers behind."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import numpy as np
import pytest

import accelnn

N_THREADS, CALLS = 8, 200
CPU = ["numpy", "numba"]


def _cpu_backend(name):
    status = accelnn.available_backends()[name]
    if not status.available:
        pytest.skip(f"backend {name} unavailable: {status.reason}")
    return name


def _fitted(backend, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 12))
    y = rng.integers(0, 4, 256)
    model = accelnn.MLP([12, 32, 32, 4], "tanh", seed=0, backend=backend, dtype=dtype)
    model.fit(X, y, epochs=2, batch_size=64, optimizer="adam")
    return model, X, y


def _queries(model, X, y):
    """Every inference call, as (name, call) pairs returning NumPy results."""
    be = model.backend
    return [
        ("forward", lambda a, b: be.to_numpy(model.forward(a))),
        ("predict", lambda a, b: be.to_numpy(model.predict(a))),
        ("predict_proba", lambda a, b: be.to_numpy(model.predict_proba(a))),
        ("loss", lambda a, b: np.float64(model.loss(a, b))),
        ("loss_and_grads", lambda a, b: np.concatenate(
            [[model.loss_and_grads(a, b)[0]]]
            + [g.ravel() for pair in model.loss_and_grads(a, b)[1] for g in pair])),
    ]


@pytest.mark.parametrize("mixed", [False, True], ids=["same-size", "mixed-sizes"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend_name", CPU)
def test_inference_from_eight_threads_equals_serial_calls(backend_name, dtype, mixed):
    model, X, y = _fitted(_cpu_backend(backend_name), dtype)
    sizes = [1, 7, 64, 33, 200, 64, 5, 128] if mixed else [64] * N_THREADS
    starts = [7 * k for k in range(N_THREADS)]
    batches = [(X[s:s + n], y[s:s + n]) for s, n in zip(starts, sizes)]
    queries = _queries(model, X, y)
    want = [[call(a, b) for _, call in queries] for a, b in batches]
    wrong, errors = [], []
    barrier = threading.Barrier(N_THREADS)

    def work(k):
        a, b = batches[k]
        try:
            barrier.wait()
            for i in range(CALLS):
                q = i % len(queries)
                if not np.array_equal(queries[q][1](a, b), want[k][q]):
                    wrong.append((k, queries[q][0]))
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not wrong, f"{len(wrong)} of {N_THREADS * CALLS} results differ: {wrong[:5]}"


@pytest.mark.parametrize("fit_options", [{"lr": 0.5}, {"optimizer": "lbfgs"}],
                         ids=["gradient-descent", "lbfgs"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend_name", CPU)
def test_predict_during_fit_sees_whole_steps_and_changes_nothing(backend_name, dtype,
                                                                 fit_options):
    """Full-batch gradient descent (one step an epoch) and L-BFGS (one iteration an epoch,
    its line search trying points in between). A callback records the weights after every
    step; each concurrent forward pass must equal the forward pass of one of them, and the
    fit must end bit-equal to the same fit with no thread beside it."""
    backend = _cpu_backend(backend_name)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 12))
    y = rng.integers(0, 4, 300)
    Xq = X[:50]

    def model():
        return accelnn.MLP([12, 32, 32, 4], "tanh", "softmax", seed=3, backend=backend,
                           dtype=dtype)

    alone = model()
    alone.fit(X, y, epochs=60, **fit_options)
    shared = model()
    steps = [shared.get_weights()]
    seen, stop = [], threading.Event()

    def predict():
        while not stop.is_set():
            seen.append(shared.backend.to_numpy(shared.forward(Xq)).copy())

    reader = threading.Thread(target=predict)
    reader.start()
    try:
        shared.fit(X, y, epochs=60, **fit_options,
                   callbacks=[lambda epoch, logs, m: steps.append(m.get_weights())])
    finally:
        stop.set()
        reader.join()
    for (W, b), (W2, b2) in zip(shared.get_weights(), alone.get_weights()):
        assert np.array_equal(W, W2) and np.array_equal(b, b2)
    twin = model()
    allowed = set()
    for weights in steps:
        twin.set_weights(weights)
        allowed.add(twin.backend.to_numpy(twin.forward(Xq)).tobytes())
    assert seen, "the reader thread made no prediction"
    mixed = sum(out.tobytes() not in allowed for out in seen)
    assert mixed == 0, f"{mixed} of {len(seen)} predictions saw weights of no whole step"


def test_a_second_concurrent_fit_is_refused():
    X = np.random.default_rng(0).normal(size=(64, 3))
    y = (X[:, 0] > 0).astype(int)
    model = accelnn.MLP([3, 8, 1], seed=0, backend="numpy")
    started, outcome = threading.Event(), []

    def slow(epoch, logs, m):
        started.set()
        done.wait(10)

    done = threading.Event()
    first = threading.Thread(target=lambda: model.fit(X, y, epochs=2, callbacks=[slow]))
    first.start()
    started.wait(10)
    try:
        model.fit(X, y, epochs=1)
    except RuntimeError as exc:
        outcome.append(str(exc))
    finally:
        done.set()
        first.join()
    assert outcome and "already being trained in another thread" in outcome[0]


@pytest.mark.parametrize("backend_name", CPU)
def test_inference_retains_at_most_one_mebibyte(backend_name):
    """hunt-09: predictions on growing inputs left every size's forward and backward buffers
    in the model. Now a call's buffers are its own; at most one set of hidden-layer buffers
    of up to 1 MiB stays for the next call."""
    backend = _cpu_backend(backend_name)
    sizes = [50, 500, 500, 10]
    model = accelnn.MLP(sizes, "relu", "softmax", seed=0, backend=backend, dtype="float32")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 50)).astype(np.float32)
    model.fit(X, rng.integers(0, 10, 512), epochs=1, batch_size=128)
    inputs = [rng.normal(size=(n, 50)).astype(np.float32) for n in (2000, 4000, 6000, 8000, 1)]
    for Xi in inputs[:1]:  # warm-up: lazily made module state is not the model's
        model.predict_proba(Xi)
        model.loss(Xi[:10], np.zeros(10, int))
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for Xi in inputs:
            model.predict_proba(Xi)
            model.predict(Xi)
            model.loss(Xi, np.zeros(len(Xi), int))
            k = min(100, len(Xi))
            model.loss_and_grads(Xi[:k], np.zeros(k, int))
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    one_pass = 8000 * sum(sizes[1:]) * 4
    assert kept <= min(one_pass, 1 << 20) + 64 * 1024, f"the model kept {kept} bytes"
