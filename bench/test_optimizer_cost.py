"""What an optimizer update costs next to a whole train step, per backend (pytest-benchmark).

    pytest bench/test_optimizer_cost.py --benchmark-only

Each group is one (config, dtype) and holds, for every accelnn backend, the SGD train step and
the fused in-place update of each optimizer alone, on the same parameters and gradients: the
ratio of the two medians is the update's share of a step (Adam's on `wide` should stay under
15%). The update runs repeatedly on its own output, as it does in training.
"""

from __future__ import annotations

import pytest

import accelnn
from accelnn import bench
from accelnn.optimizers import get_optimizer

NAMES = [n for n in bench.backend_names() if n not in bench.PEERS]
CASES = [pytest.param(c, b, what, id=f"{c}-{what}-{b}-float32")
         for c in ("wide", "mnist") for b in NAMES
         for what in ("train_step", "adam", "adamw", "rmsprop", "nesterov")]


@pytest.mark.parametrize("config, backend, what", CASES)
def test_update_cost(benchmark, config, backend, what):
    reason = bench.unavailable_reason(backend)
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")
    cfg = bench.CONFIGS[config]
    inputs = bench.make_inputs(cfg, "float32")
    model = accelnn.MLP(cfg.layers, cfg.hidden, cfg.output, dtype="float32", backend=backend)
    model.set_weights(inputs.weights)
    be = model.backend
    if what == "train_step":
        fn = model.step_function(inputs.X, inputs.y, lr=bench.LR)
    else:
        model.loss_and_grads(inputs.X, inputs.y)
        opt = get_optimizer(what, 1e-3)
        state = opt.init_state(be, model.state.params)

        def fn():
            opt.update(be, model.state.params, model.state.grads, state, opt.lr)
    fn()
    be.synchronize()

    def call():
        fn()
        be.synchronize()

    benchmark.group = f"{config}-float32-{backend}"
    benchmark.extra_info.update(parameters=sum(p.size for p in model.state.params))
    benchmark(call)
