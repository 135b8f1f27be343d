"""Reporting: the report as a Markdown table, the comparison with an earlier report, and a
PNG bar chart of samples/s."""

from __future__ import annotations


def _key(r) -> tuple:
    return r["config"], r["phase"], r["backend"], r["dtype"]


def compare(report: dict, old: dict, threshold: float = 0.10) -> dict:
    """Samples/s of each row over the same row of an earlier report; a ratio below
    1 - threshold is flagged as a regression."""
    before = {_key(r): r for r in old.get("records", []) if r.get("samples_per_s")}
    rows = []
    for r in report["records"]:
        o = before.get(_key(r))
        if o is None or not r["samples_per_s"]:
            continue
        ratio = r["samples_per_s"] / o["samples_per_s"]
        rows.append({"config": r["config"], "phase": r["phase"], "backend": r["backend"],
                     "dtype": r["dtype"], "old_samples_per_s": o["samples_per_s"],
                     "samples_per_s": r["samples_per_s"], "ratio": ratio,
                     "regression": ratio < 1.0 - threshold})
    return {"threshold": threshold, "old_created": old.get("created"), "rows": rows}


def _fmt_time(s) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _fmt_count(x) -> str:
    if x is None:
        return "-"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _fmt(x, spec: str, suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def _check(r) -> str:
    if r["status"] != "ok":
        return f"FAILED: {r['error'][:80]}"
    if r["within_limit"] is False:  # a peer's own rounding: reported, not accelnn's failure
        return "peer's error beyond the limit" if r["peer"] else "ERROR BEYOND LIMIT"
    if r["iqr_s"] is not None and r["iqr_s"] > 0.5 * r["median_s"]:
        return "ok, noisy timing"  # the machine was busy: rerun before trusting the speed
    return "ok"


def _machine_line(m: dict) -> str:
    blas = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} (kernel {b.get('architecture')}, "
        f"{b.get('num_threads')} threads)" if "error" not in b else b["error"]
        for b in m.get("blas", [])) or "unknown"
    gpus = [f"{n}: {i.get('gpu', i.get('device'))}" for n, i in m.get("backends", {}).items()
            if i.get("device") not in (None, "cpu")]
    versions = ", ".join(f"{k} {m.get(k) or '-'}" for k in ("python", "numpy", "numba", "cupy"))
    return (f"{m.get('cpu')}, {m.get('cores')} cores; BLAS {blas}; "
            f"GPU {', '.join(gpus) or 'none'}; {versions}")


def to_markdown(report: dict) -> str:
    """The report as Markdown: a header, one table row per record, skipped backends and, when
    the report was compared with an earlier one, the ratios."""
    s = report["settings"]
    lines = [
        "# accelnn bench",
        "",
        f"Machine: {_machine_line(report['machine'])}",
        "",
        f"{'quick' if s['quick'] else 'full'} run, {report['created']}: median of samples "
        f"after warm-up, at least {s['min_time_s']} s per row; GFLOP/s counts GEMM FLOPs; "
        f"errors vs a float64 NumPy reference on the same weights and data: max rel err of "
        f"the output (predict) or loss and gradients (train_step), limits float64 "
        f"{s['err_limits']['float64']:.0e}, float32 {s['err_limits']['float32']:.0e}; "
        f"10-step err of the weights after {s['agreement_steps']} steps, limits "
        f"{s['weights_limits']['float64']:.0e} and {s['weights_limits']['float32']:.0e}.",
        "",
        "| config | phase | dtype | backend | batch | median | IQR | samples/s | vs numpy "
        "| GFLOP/s | GEMM frac | compile s | max rel err | 10-step err | check |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    order = {n: i for i, n in enumerate(s["backends"])}
    for r in sorted(report["records"], key=lambda r: (
            s["configs"].index(r["config"]), s["phases"].index(r["phase"]),
            s["dtypes"].index(r["dtype"]), order.get(r["backend"], len(order)))):
        backend = f"{r['backend']} (peer)" if r["peer"] else r["backend"]
        lines.append(
            f"| {r['config']} | {r['phase']} | {r['dtype']} | {backend} | {r['batch']} "
            f"| {_fmt_time(r['median_s'])} | {_fmt_time(r['iqr_s'])} "
            f"| {_fmt_count(r['samples_per_s'])} | {_fmt(r['speedup_vs_numpy'], '.2f', 'x')} "
            f"| {_fmt(r['gflops'], '.3g')} | {_fmt(r['gemm_fraction'], '.2f')} "
            f"| {_fmt(r['compile_s'], '.3f')} | {_fmt(r['max_rel_err'], '.1e')} "
            f"| {_fmt(r['weights_rel_err'], '.1e')} | {_check(r)} |")
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k['backend']} ({k['reason']})"
                                              for k in report["skipped"])]
    cmp = report.get("compare")
    if cmp:
        lines += ["", f"## Compared with the run of {cmp['old_created']} (regression: "
                      f"below {1 - cmp['threshold']:.2f}x)", "",
                  "| config | phase | dtype | backend | old samples/s | samples/s | ratio | |",
                  "|---|---|---|---|---:|---:|---:|---|"]
        for c in cmp["rows"]:
            lines.append(f"| {c['config']} | {c['phase']} | {c['dtype']} | {c['backend']} "
                         f"| {_fmt_count(c['old_samples_per_s'])} "
                         f"| {_fmt_count(c['samples_per_s'])} | {c['ratio']:.2f}x "
                         f"| {'REGRESSION' if c['regression'] else ''} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path) -> None:
    """A PNG bar chart of samples/s (log scale): one panel per (phase, dtype), configs along x,
    one bar per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["settings"]
    ok = [r for r in report["records"] if r["samples_per_s"]]
    backends = [b for b in s["backends"] if any(r["backend"] == b for r in ok)]
    fig, axes = plt.subplots(len(s["phases"]), len(s["dtypes"]), squeeze=False,
                             figsize=(4.5 * len(s["dtypes"]), 3.5 * len(s["phases"])))
    width = 0.8 / max(len(backends), 1)
    for i, phase in enumerate(s["phases"]):
        for j, dtype in enumerate(s["dtypes"]):
            ax = axes[i][j]
            for k, b in enumerate(backends):
                got = {r["config"]: r["samples_per_s"] for r in ok
                       if (r["phase"], r["dtype"], r["backend"]) == (phase, dtype, b)}
                xs = [x + k * width for x, c in enumerate(s["configs"]) if c in got]
                ax.bar(xs, [got[c] for c in s["configs"] if c in got], width, label=b)
            ax.set_xticks([x + width * (len(backends) - 1) / 2
                           for x in range(len(s["configs"]))], s["configs"])
            ax.set_yscale("log")
            ax.set_title(f"{phase}, {dtype}")
            ax.set_ylabel("samples/s")
    axes[0][0].legend()
    fig.suptitle(f"accelnn bench: {report['machine'].get('cpu')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

