"""The numba backend against the fastest peer, interleaved in one process (issue #13's targets).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/ratios.py --rounds 5 --json r.json

Each round times every (configuration, phase) row on numba and on every peer that imports here
(JAX jitted and pipelined, PyTorch eager, scikit-learn), one block per subject, the subjects'
order rotated from round to round. A block is a median over calls lasting --block seconds. A
block during which other processes used the CPUs (their share of /proc/stat's busy time over
--noise cores) is discarded and timed again, up to --retries times; the discarded blocks are
counted in the output. The ratio of a row is the fastest peer's median over the rounds divided
by numba's: above 1, numba is faster. float32, as the targets are stated. The peers that
compute through NumPy's BLAS (scikit-learn) run on the BLAS threads accelnn's policy gives the
row's largest GEMM, as the torch peer sets its own (accelnn.bench.subjects.ready).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from accelnn.bench import CONFIGS, make_inputs, make_subject, unavailable_reason
from accelnn.bench.subjects import ready
from accelnn.machine import cpu_ticks, machine_info

ROWS = [("seed", "train_step", 1.0), ("mnist", "train_step", 1.0), ("wide", "train_step", 1.0),
        ("deep", "train_step", 1.15), ("tabular", "fit_epoch", 1.5), ("mnist", "fit_epoch", 1.1),
        ("mnist", "predict", 1.05)]
PEERS = ["jax", "torch", "sklearn"]


def block(fn, sync, seconds: float) -> tuple[float, float]:
    """(median seconds per call, CPU share of other processes in cores) over one block."""
    times = []
    busy0, own0 = cpu_ticks()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or not times:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    busy1, own1 = cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    return statistics.median(times), max(0, (busy1 - busy0) - (own1 - own0)) / hz / wall


def _us(t) -> str:
    return "-" if t is None else f"{t * 1e6:,.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=float, default=1.0, help="seconds per block")
    parser.add_argument("--noise", type=float, default=0.15,
                        help="discard a block when other processes used more cores than this")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--rows", help="comma-separated config:phase (default: all)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    rows = ROWS if not args.rows else [
        (c, p, dict(((r[0], r[1]), r[2]) for r in ROWS).get((c, p), 1.0))
        for c, p in (x.split(":") for x in args.rows.split(","))]
    peers = [p for p in PEERS if unavailable_reason(p) is None]
    print(f"peers here: {', '.join(peers) or 'none'}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE')}", file=sys.stderr)
    fns = {}
    for config_name, phase, _ in rows:
        config = CONFIGS[config_name]
        inputs = make_inputs(config, "float32", fit=phase == "fit_epoch")
        for name in ["numba", *peers]:
            subject = make_subject(name, config, "float32", inputs)
            ready(subject, phase)
            t0 = time.perf_counter()
            fn = subject.phase(phase)
            fn()
            subject.synchronize()
            first = time.perf_counter() - t0
            fns[config_name, phase, name] = (fn, subject, first)
    times = {key: [] for key in fns}
    discarded = {key: 0 for key in fns}
    noisy = {key: [] for key in fns}  # (median, other processes' cores) of discarded blocks
    for r in range(args.rounds):
        for config_name, phase, _ in rows:
            names = ["numba", *peers]
            names = names[r % len(names):] + names[:r % len(names)]
            for name in names:
                key = (config_name, phase, name)
                fn, subject, _ = fns[key]
                for _ in range(args.retries + 1):
                    ready(subject, phase)
                    median, other = block(fn, subject.synchronize, args.block)
                    if other <= args.noise:
                        times[key].append(median)
                        break
                    discarded[key] += 1
                    noisy[key].append((median, round(other, 2)))
        print(f"round {r + 1} done", file=sys.stderr)
    print(f"| row | numba us | {' us | '.join(peers)} us | ratio | target | discarded |")
    results = []
    for config_name, phase, target in rows:
        mine = times[config_name, phase, "numba"]
        row = {"config": config_name, "phase": phase, "target": target,
               "numba_s": statistics.median(mine) if mine else None, "peers": {}}
        for name in peers:
            got = times[config_name, phase, name]
            row["peers"][name] = statistics.median(got) if got else None
        best = min((t for t in row["peers"].values() if t), default=None)
        row["ratio"] = best / row["numba_s"] if best and row["numba_s"] else None
        row["rounds"] = {n: len(times[config_name, phase, n]) for n in ["numba", *peers]}
        row["discarded"] = {n: discarded[config_name, phase, n] for n in ["numba", *peers]}
        row["noisy_blocks"] = {n: noisy[config_name, phase, n] for n in ["numba", *peers]}
        row["all_s"] = {n: times[config_name, phase, n] for n in ["numba", *peers]}
        row["first_call_s"] = {n: fns[config_name, phase, n][2] for n in ["numba", *peers]}
        results.append(row)
        cells = " | ".join(_us(t) for t in (row["numba_s"], *row["peers"].values()))
        ratio = f"{row['ratio']:.2f}" if row["ratio"] else "-"
        print(f"| {config_name} {phase} | {cells} | {ratio} | {target} | "
              f"{sum(row['discarded'].values())} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(), "settings": vars(args), "peers": peers,
                       "rows": results}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
