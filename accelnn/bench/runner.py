"""The runner: the matrix of configurations, dtypes, backends and phases, each row timed and
checked with every step guarded, gathered into the report (the JSON document)."""

from __future__ import annotations

import datetime
import functools
import importlib
import time

from .configs import (
    AGREEMENT_STEPS,
    CONFIGS,
    DTYPES,
    ERR_LIMITS,
    LR,
    PEERS,
    PHASES,
    SCHEMA,
    WEIGHTS_LIMITS,
    BenchError,
    Gemm,
    make_inputs,
)
from .load import BUSY, LoadMonitor
from .measuring import agreement, measure_many, reference
from .progress import Progress
from .subjects import backend_names, make_subject, ready, unavailable_reason


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def parse_names(value, valid, what: str) -> list[str]:
    """A comma-separated string or list of names, each checked against `valid` (BenchError
    listing the valid ones otherwise); None means all of them."""
    if value is None:
        return list(valid)
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip().lower() for n in names if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise BenchError(f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; "
                         f"choose from: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def run(configs=None, backends=None, dtypes=None, phases=None, *, quick: bool = False,
        min_time: float | None = None, seed: int = 0, progress: bool = True,
        monitor: LoadMonitor | None = None) -> dict:
    """Run the benchmark matrix and return the report (the JSON document).

    configs, backends, dtypes, phases: names (lists or comma-separated), default all; backends
    include the peers torch and jax. Unknown names raise BenchError; backends that cannot run
    here are listed under "skipped" with the reason. quick: min_time 0.05 s and 3 samples a row
    (CI), else 0.5 s and 5. A backend that raises is reported in its rows as failed.
    progress: report each row on stderr as it finishes (accelnn.bench.progress). monitor: the
    load monitor that judges each timing block (default: one reading /proc/stat); the report's
    "load" says how busy the machine was."""
    configs = [CONFIGS[n] for n in parse_names(configs, list(CONFIGS), "config")]
    names = parse_names(backends, backend_names(), "backend")
    dtypes = parse_names(dtypes, list(DTYPES), "dtype")
    phases = parse_names(phases, list(PHASES), "phase")
    min_time = (0.05 if quick else 0.5) if min_time is None else float(min_time)
    if not min_time > 0:
        raise BenchError(f"min_time must be > 0 seconds, got {min_time}")
    min_samples = 3 if quick else 5
    skipped = {n: r for n in names if (r := unavailable_reason(n)) is not None}
    runnable = [n for n in names if n not in skipped]

    monitor = LoadMonitor() if monitor is None else monitor
    monitor.start()
    records, gemm_rates = [], []
    bar = Progress(len(configs) * len(dtypes) * len(runnable) * len(phases)
                   if progress else 0)
    timed = functools.partial(measure_many, min_samples=min_samples, monitor=monitor)
    for config in configs:
        for dtype in dtypes:
            inputs = make_inputs(config, dtype, seed, fit="fit_epoch" in phases)
            try:
                ref, ref_error = reference(config, inputs, phases), None
            except Exception as exc:
                ref, ref_error = None, f"reference failed: {_error_text(exc)}"
            rows, gemms = _bench_config(runnable, config, dtype, inputs, phases, ref,
                                        ref_error, min_time, timed, bar.row)
            records += rows
            gemm_rates += gemms
    bar.close()
    _add_speedups(records)
    from accelnn.machine import machine_info

    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"configs": [c.name for c in configs], "backends": names,
                     "dtypes": dtypes, "phases": phases, "quick": quick, "min_time_s": min_time,
                     "min_samples": min_samples, "seed": seed, "lr": LR,
                     "agreement_steps": AGREEMENT_STEPS, "err_limits": ERR_LIMITS,
                     "weights_limits": WEIGHTS_LIMITS},
        "machine": {**machine_info(), "backends": _backend_infos(runnable)},
        "load": {**monitor.summary(),
                 "rows_remeasured": sum((r["attempts"] or 0) > 1 for r in records),
                 "rows_noisy": sum(bool(r["noisy"]) for r in records),
                 "rows_busy": sum(r["noisy"] == BUSY for r in records)},
        "skipped": [{"backend": n, "reason": r} for n, r in skipped.items()],
        "records": records,
        "gemm": gemm_rates,
    }


def _bench_config(names, config, dtype, inputs, phases, ref, ref_error, min_time, timed,
                  done):
    """The rows of every backend in `names` on one (config, dtype), and their GEMM rates;
    `done(row)` is called as each row is finished. Each phase is timed on all the backends
    together, their timing blocks interleaved (timed(entries, min_time, ...) is
    `measure_many` with the run's min_samples and load monitor), so that a slow spell of the
    machine falls on every contender alike. Every step is guarded: what raises marks the rows
    failed with the error, the rest is kept. A peer's errors are measured but not judged
    (within_limit stays None)."""
    benches = [_Bench(name, config, dtype, inputs, phases, done) for name in names]
    for p in phases:
        for b in benches:
            b.first_call(p)
        live = [b for b in benches if p in b.first]
        entries = [(b.first[p][0], b.subject.synchronize, functools.partial(ready, b.subject, p))
                   for b in live]
        try:
            timings = timed(entries, min_time) if live else []
        except Exception:  # one of them raised: time each alone, so that only it fails
            timings = []
            for entry in entries:
                try:
                    timings.append(timed([entry], min_time)[0])
                except Exception as exc:
                    timings.append(exc)
        for b, t in zip(live, timings):
            if isinstance(t, Exception):
                b.fail(b.rows[p], t)
                done(b.rows[p])
            else:
                b.finish(p, t, ref, ref_error, min_time, timed)
    return ([row for b in benches for row in b.rows.values()],
            [g for b in benches if (g := b.gemm_rates()) is not None])


class _Bench:
    """One backend's part of `_bench_config`: its rows, its subject (None when it could not
    be made) and the first call of each phase (timed apart: the compile time)."""

    def __init__(self, name, config, dtype, inputs, phases, done):
        self.name, self.config, self.dtype, self.done = name, config, dtype, done
        measured = dict.fromkeys((
            "device", "error", "median_s", "q1_s", "q3_s", "iqr_s", "calls", "samples",
            "kept_samples", "blocks", "dropped_blocks", "attempts", "foreign_cpu_s", "noisy",
            "samples_per_s", "gflops", "gemm_gflops", "gemm_fraction", "compile_s",
            "max_rel_err", "weights_rel_err", "within_limit", "errors", "speedup_vs_numpy"))
        self.rows = {p: {"config": config.name, "phase": p, "backend": name, "dtype": dtype,
                         "peer": name in PEERS,
                         "batch": config.rows(p) if p == "predict" else config.batch,
                         "layers": list(config.layers), "gflop": config.flops(p) / 1e9,
                         "err_limit": ERR_LIMITS[dtype],
                         "weights_err_limit": WEIGHTS_LIMITS[dtype], "status": "ok",
                         **measured}
                     for p in phases}
        self.first: dict = {}
        self.seconds: dict = {}  # GEMM -> median seconds of one call of the backend's matmul
        self.shapes = list(dict.fromkeys(g for p in phases for g in config.gemms(p)))
        self.subject = None
        try:
            self.subject = make_subject(name, config, dtype, inputs)
        except Exception as exc:
            for row in self.rows.values():
                self.fail(row, exc)
                done(row)

    def first_call(self, p) -> None:
        """Build phase p and run its first call, before p is timed on this subject: its
        compile time. Done phase by phase, so that the first rows are reported before later
        phases compile (a fresh install compiles numba's kernels for seconds)."""
        if self.subject is None:
            return
        self.rows[p]["device"] = self.subject.device
        try:
            ready(self.subject, p)
            t0 = time.perf_counter()
            fn = self.subject.phase(p)
            fn()
            self.subject.synchronize()
            self.first[p] = fn, time.perf_counter() - t0
        except Exception as exc:
            self.fail(self.rows[p], exc)
            self.done(self.rows[p])

    @staticmethod
    def fail(row, exc) -> None:
        row["status"], row["error"] = "failed", _error_text(exc)

    def _gemm_seconds(self, g: Gemm, min_time: float, timed) -> float:
        if g not in self.seconds:
            subject = self.subject
            self.seconds[g] = timed([(subject.gemm(g), subject.synchronize, None)],
                                    min_time / len(self.shapes), attempts=1)[0].median_s
        return self.seconds[g]

    def finish(self, p, t, ref, ref_error, min_time, timed) -> None:
        """Fill phase p's row from its timing t, the GEMM rate and the agreement; done(row)."""
        config, dtype, subject = self.config, self.dtype, self.subject
        row, flops, first_s = self.rows[p], config.flops(p), self.first[p][1]
        try:
            row.update(median_s=t.median_s, q1_s=t.q1_s, q3_s=t.q3_s, iqr_s=t.q3_s - t.q1_s,
                       calls=t.calls, samples=t.samples, kept_samples=t.kept,
                       blocks=t.blocks, dropped_blocks=t.dropped, attempts=t.attempts,
                       foreign_cpu_s=t.foreign_cpu_s, noisy=t.noisy,
                       samples_per_s=config.rows(p) / t.median_s,
                       gflops=flops / t.median_s / 1e9,
                       compile_s=max(0.0, first_s - t.median_s))
            ready(subject, p)
            rate = flops / sum(self._gemm_seconds(g, min_time, timed)
                               for g in config.gemms(p)) / 1e9
            row.update(gemm_gflops=rate, gemm_fraction=row["gflops"] / rate)
            if ref is None:
                raise RuntimeError(ref_error)
            errors = agreement(subject, ref, p)
            if p == "predict":
                row["max_rel_err"] = errors["forward"]
            else:
                row["max_rel_err"] = max(errors["loss"], errors["grads"])
                row["weights_rel_err"] = errors[f"weights_after_{AGREEMENT_STEPS}_steps"]
            row["errors"] = errors
            if not row["peer"]:
                row["within_limit"] = (row["max_rel_err"] <= ERR_LIMITS[dtype] and
                                       (row["weights_rel_err"] or 0.0) <= WEIGHTS_LIMITS[dtype])
        except Exception as exc:
            self.fail(row, exc)
        self.done(row)

    def gemm_rates(self) -> dict | None:
        """The backend's GEMM rates on this configuration's shapes, or None."""
        if not self.seconds:
            return None
        return {"config": self.config.name, "backend": self.name, "dtype": self.dtype,
                "device": self.subject.device,
                "shapes": [{**g._asdict(), "median_s": s, "gflops": g.flops / s / 1e9}
                           for g, s in self.seconds.items()]}


def _add_speedups(records) -> None:
    base = {(r["config"], r["phase"], r["dtype"]): r["samples_per_s"] for r in records
            if r["backend"] == "numpy" and r["samples_per_s"]}
    for r in records:
        ref = base.get((r["config"], r["phase"], r["dtype"]))
        if ref and r["samples_per_s"]:
            r["speedup_vs_numpy"] = r["samples_per_s"] / ref


def _backend_infos(names) -> dict:
    from accelnn import get_backend

    infos = {}
    for name in names:
        try:
            if name in PEERS:
                mod = importlib.import_module(name)
                infos[name] = {"version": getattr(mod, "__version__", None), "peer": True}
            else:
                infos[name] = {k: str(v) for k, v in get_backend(name).info().items()}
        except Exception as exc:
            infos[name] = {"error": _error_text(exc)}
    return infos

