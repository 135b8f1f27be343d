"""pytest-benchmark suites over the matrix of `accelnn bench`: config x phase x backend x dtype.

    pytest bench/ --benchmark-only                       # every available backend (and peer)
    pytest bench/ --benchmark-only -k "mnist and float32"
    pytest bench/ --benchmark-only --benchmark-autosave  # then --benchmark-compare

Ids read `config-phase-backend-dtype`; each benchmark group is one (config, phase, dtype), so a
group's table compares the backends. Backends and peers that cannot run here are skipped with
the reason. Models and data come from accelnn.bench, the same builders as `accelnn bench`; the
first call (JIT compilation, workspaces) runs before timing, and every timed call ends with the
backend's synchronize().
"""

from __future__ import annotations

import pytest

from accelnn import bench

CASES = [pytest.param(c, p, b, d, id=f"{c}-{p}-{b}-{d}")
         for c in bench.CONFIGS for p in bench.PHASES for b in bench.backend_names()
         for d in bench.DTYPES]


@pytest.mark.parametrize("config, phase, backend, dtype", CASES)
def test_throughput(benchmark, config, phase, backend, dtype):
    reason = bench.unavailable_reason(backend)
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")
    cfg = bench.CONFIGS[config]
    subject = bench.make_subject(backend, cfg, dtype, bench.make_inputs(cfg, dtype))
    fn = subject.phase(phase)
    fn()
    subject.synchronize()

    def call():
        fn()
        subject.synchronize()

    benchmark.group = f"{config}-{phase}-{dtype}"
    benchmark.extra_info.update(batch=cfg.batch, gflop=cfg.flops(phase) / 1e9,
                                device=subject.device, peer=subject.peer)
    benchmark(call)
