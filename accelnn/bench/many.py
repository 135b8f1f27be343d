"""The many_models row: K tabular networks trained in one pass (accelnn.fit_many) against K
sequential MLP.fit calls with the same settings, as a search over seeds and learning rates
or an ensemble trains them.

    many_models   K x [20, 64, 64, 2] relu / softmax, batch 32, 5,000 rows (gaussian
                  features, two random classes), 20 epochs of Adam (lr 1e-3), model k seeded k

For each K the one pass and the sequential fits are timed in the same process, rounds
interleaved (one pass of every K, then the sequential fits of every K, round after round),
and the medians over the rounds are reported: wall-clock seconds and the process's CPU
seconds (on a shared machine the CPU time is the steadier of the two). The sequential time is
K times the median time of one fit; `--sequential N` fits N models per round and takes the
median of those (default: all K, up to 32). `ratio` is sequential / one pass, the row's
target being 4 at K = 32 on the CPU. `growth` is each K's one-pass time over the smallest
K's, beside K's own ratio: linear growth means the one pass costs the same per model at
every K.

Agreement, in the same run: 4 models of the row's network trained 2 epochs in one pass
against their sequential fits, in float64 (max |a - b| / max |b| over all weights, limit
1e-12). The timed float32 runs are not compared: over 20 epochs of Adam two float32 runs
that differ in the last bit of one GEMM drift apart (the GEMMs of one pass and of a fit may
round differently), as any two float32 trainings of a ReLU net would.

Threads: the one pass spreads the models over numba's threads (`--threads`, default numba's
own count); the sequential fits run as MLP.fit runs them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from .configs import ERR_LIMITS, BenchError
from .measuring import rel_err


@dataclass(frozen=True)
class ManyConfig:
    name: str
    layers: tuple[int, ...]
    hidden: str
    output: str
    batch: int
    rows: int
    epochs: int
    optimizer: str
    lr: float
    ks: tuple[int, ...]
    target_k: int  # the K the speed target is set at
    target_ratio: float


MANY_MODELS = ManyConfig("many_models", (20, 64, 64, 2), "relu", "softmax", 32, 5_000, 20,
                         "adam", 1e-3, (8, 32, 128), 32, 4.0)


def _data(config: ManyConfig, seed: int):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((config.rows, config.layers[0])),
            rng.integers(0, config.layers[-1], config.rows))


def _models(config: ManyConfig, n: int, dtype: str, backend: str, seed: int) -> list:
    from accelnn import MLP

    return [MLP(config.layers, config.hidden, config.output, seed=seed + k, dtype=dtype,
                backend=backend) for k in range(n)]


def _clock(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _flat(model) -> np.ndarray:
    return np.concatenate([np.ravel(a) for pair in model.get_weights() for a in pair])


def agreement(config: ManyConfig, backend: str, seed: int = 0, k: int = 4,
              epochs: int = 2) -> float:
    """Max relative error of the weights of k models trained `epochs` in one pass against
    their sequential fits, float64."""
    from accelnn import fit_many

    X, y = _data(config, seed)
    options = dict(epochs=epochs, batch_size=config.batch, optimizer=config.optimizer,
                   lr=config.lr)
    together = _models(config, k, "float64", backend, seed)
    fit_many(together, X, y, **options)
    alone = _models(config, k, "float64", backend, seed)
    for model in alone:
        model.fit(X, y, **options)
    return max(rel_err(_flat(a), _flat(b)) for a, b in zip(together, alone))


def run_many(ks=None, *, dtype: str = "float32", backend: str = "numba", epochs=None,
             rounds: int = 3, sequential: int | None = None, seed: int = 0,
             threads: int | None = None, config: ManyConfig = MANY_MODELS) -> dict:
    """Time the many_models row for every K of `ks` (default config.ks) and return the report:
    machine, settings, and per K the medians of one pass and of the sequential fits, their
    ratio, the time per model and per model-step and the growth; and the float64 agreement.
    threads: numba's thread count for the run (numba backend). Raises BenchError for K < 1,
    rounds < 1, epochs < 1, sequential < 1 or threads < 1."""
    ks = tuple(config.ks if ks is None else ks)
    epochs = config.epochs if epochs is None else int(epochs)
    if not ks or min(ks) < 1 or rounds < 1 or epochs < 1 or any(
            v is not None and v < 1 for v in (sequential, threads)):
        raise BenchError("many_models needs K >= 1, rounds >= 1, epochs >= 1, sequential >= 1 "
                         "and threads >= 1")
    if backend == "numba":
        import numba

        before = numba.get_num_threads()
        numba.set_num_threads(min(threads or before, numba.config.NUMBA_NUM_THREADS))
        try:
            return _run(ks, dtype, backend, epochs, rounds, sequential, seed, config,
                        numba.get_num_threads())
        finally:
            numba.set_num_threads(before)
    return _run(ks, dtype, backend, epochs, rounds, sequential, seed, config, 1)


def _run(ks, dtype, backend, epochs, rounds, sequential, seed, config, threads) -> dict:
    from accelnn import fit_many
    from accelnn.machine import machine_info

    X, y = _data(config, seed)
    options = dict(epochs=epochs, batch_size=config.batch, optimizer=config.optimizer,
                   lr=config.lr)
    n_seq = {k: min(k, sequential or min(k, 32)) for k in ks}
    started = time.perf_counter()
    compile_s = _clock(lambda: fit_many(_models(config, 2, dtype, backend, seed), X, y,
                                        **{**options, "epochs": 1}))[0]
    compile_s += _clock(lambda: _models(config, 1, dtype, backend, seed)[0].fit(
        X, y, **{**options, "epochs": 1}))[0]
    one, seq = {k: [] for k in ks}, {k: [] for k in ks}
    for _ in range(rounds):
        for k in ks:
            models = _models(config, k, dtype, backend, seed)
            one[k].append(_clock(lambda models=models: fit_many(models, X, y, **options)))
        for k in ks:
            for model in _models(config, n_seq[k], dtype, backend, seed):
                seq[k].append(_clock(lambda model=model: model.fit(X, y, **options)))
    err = agreement(config, backend, seed)
    steps = epochs * -(-config.rows // config.batch)
    records = []
    for k in ks:
        wall, cpu = np.median(one[k], axis=0)
        fit_wall, fit_cpu = np.median(seq[k], axis=0)
        records.append({
            "k": k, "one_pass_s": float(wall), "one_pass_cpu_s": float(cpu),
            "sequential_s": float(fit_wall * k), "sequential_cpu_s": float(fit_cpu * k),
            "sequential_fits_timed": len(seq[k]),
            "ratio": float(fit_wall * k / wall), "cpu_ratio": float(fit_cpu * k / cpu),
            "ms_per_model": float(wall / k * 1e3),
            "us_per_model_step": float(wall / (k * steps) * 1e6),
            "sequential_us_per_step": float(fit_wall / steps * 1e6)})
    base = records[0]
    for r in records:
        r["growth"] = r["one_pass_s"] / base["one_pass_s"]
        r["k_over_smallest"] = r["k"] / base["k"]
    target = next((r for r in records if r["k"] == config.target_k), None)
    return {"config": config.name, "layers": list(config.layers), "batch": config.batch,
            "rows": config.rows, "epochs": epochs, "optimizer": config.optimizer,
            "lr": config.lr, "dtype": dtype, "backend": backend, "rounds": rounds,
            "threads": threads, "compile_s": compile_s,
            "total_s": time.perf_counter() - started,
            "agreement": {"weights_rel_err": err, "limit": ERR_LIMITS["float64"],
                          "within_limit": err <= ERR_LIMITS["float64"]},
            "target": {"k": config.target_k, "ratio": config.target_ratio,
                       "met": None if target is None else target["ratio"]
                       >= config.target_ratio},
            "machine": machine_info(), "records": records}


def to_markdown(report: dict) -> str:
    """The many_models report as a Markdown table and a line on the target."""
    lines = [f"many_models: K x {report['layers']} relu/softmax, batch {report['batch']}, "
             f"{report['rows']} rows, {report['epochs']} epochs of {report['optimizer']}, "
             f"{report['dtype']}, {report['backend']} ({report['threads']} thread"
             f"{'s' if report['threads'] > 1 else ''} for the one pass); medians of "
             f"{report['rounds']} interleaved rounds",
             "",
             "| K | one pass | sequential | ratio | CPU ratio | per model | per model-step "
             "| growth (K ratio) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["records"]:
        lines.append(
            f"| {r['k']} | {r['one_pass_s']:.3g} s | {r['sequential_s']:.3g} s "
            f"({r['sequential_fits_timed']} fits timed) | {r['ratio']:.2f}x | "
            f"{r['cpu_ratio']:.2f}x | {r['ms_per_model']:.3g} ms | "
            f"{r['us_per_model_step']:.3g} us (a fit: {r['sequential_us_per_step']:.3g} us) | "
            f"{r['growth']:.2f} ({r['k_over_smallest']:.0f}) |")
    a = report["agreement"]
    lines += ["", f"agreement (float64, 4 models, 2 epochs): weights max rel err "
                  f"{a['weights_rel_err']:.1e}{'' if a['within_limit'] else ' BEYOND LIMIT'}"]
    t = report["target"]
    if t["met"] is not None:
        lines += [f"target: one pass >= {t['ratio']}x faster than sequential fits at K = "
                  f"{t['k']}: {'met' if t['met'] else 'NOT MET'}"]
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    """The options of `accelnn bench-many`."""
    parser.description = ("The many_models row: K tabular networks trained in one pass "
                          "(accelnn.fit_many) against K sequential fits, interleaved rounds.")
    parser.add_argument("--ks", default=",".join(map(str, MANY_MODELS.ks)),
                        help="comma-separated K values (default: %(default)s)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--epochs", type=int, default=MANY_MODELS.epochs)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=None,
                        help="fits timed per K and round (default: K, at most 32)")
    parser.add_argument("--threads", type=int, default=None,
                        help="numba threads for the one pass (default: numba's own count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")


def main(args) -> int:
    """Run `accelnn bench-many`: print the table, write the JSON when asked. Returns 1 when the
    one pass disagrees with the sequential fits beyond the limit, else 0 (speed is reported,
    not judged: the target's line says whether it was met)."""
    try:
        ks = [int(k) for k in str(args.ks).split(",") if k.strip()]
    except ValueError as exc:
        raise BenchError(f"--ks must be comma-separated integers, got {args.ks!r}") from exc
    report = run_many(ks, dtype=args.dtype, backend=args.backend, epochs=args.epochs,
                      rounds=args.rounds, sequential=args.sequential, seed=args.seed,
                      threads=args.threads)
    print(to_markdown(report), end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if report["agreement"]["within_limit"] else 1
