"""Reporting: the report as Markdown (a header saying how busy the machine was, the table, the
recommendation), the comparison with an earlier report, and a PNG bar chart of throughput."""

from __future__ import annotations

from .configs import PEERS
from .recommend import recommend
from .text import check_text, fmt_count, fmt_time, layers_text

BUSY_SHARE = 0.10  # the header calls the machine busy when others used this share of its CPUs


def _key(r) -> tuple:
    return r["config"], r["phase"], r["backend"], r["dtype"]


def compare(report: dict, old: dict, threshold: float = 0.10) -> dict:
    """Samples/s of each row over the same row of an earlier report. A ratio below
    1 - threshold is a regression, except on a peer's row (peers are reported, not judged) or
    a row marked noisy in either report (`judged` says which rows count)."""
    before = {_key(r): r for r in old.get("records", []) if r.get("samples_per_s")}
    rows = []
    for r in report["records"]:
        o = before.get(_key(r))
        if o is None or not r["samples_per_s"]:
            continue
        ratio = r["samples_per_s"] / o["samples_per_s"]
        judged = not r["peer"] and not r.get("noisy") and not o.get("noisy")
        rows.append({"config": r["config"], "phase": r["phase"], "backend": r["backend"],
                     "dtype": r["dtype"], "peer": r["peer"], "judged": judged,
                     "old_samples_per_s": o["samples_per_s"],
                     "samples_per_s": r["samples_per_s"], "ratio": ratio,
                     "regression": judged and ratio < 1.0 - threshold})
    return {"threshold": threshold, "old_created": old.get("created"), "rows": rows}


def _fmt(x, spec: str, suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def load_line(load: dict | None) -> str:
    """The header's sentence on foreign load: busy or quiet, the share of the CPUs other
    processes used during the run, the blocks dropped and the rows re-measured or noisy. Busy:
    others used BUSY_SHARE of the CPUs, or a row stayed noisy for their load ("machine busy");
    a row noisy for its own spread alone does not make the machine busy."""
    if not load:
        return "Load: not recorded."
    rows = (f"{load['rows_remeasured']} rows re-measured, {load['rows_noisy']} still noisy "
            f"(marked in the check column)")
    if load["foreign_share"] is None:
        return ("Load: unknown: no /proc/stat here (not Linux), so a busy machine is judged by "
                f"the spread of repeated timing blocks alone; {rows}.")
    busy = load["foreign_share"] >= BUSY_SHARE or load.get("rows_busy", 0) > 0
    return (f"Load: machine {'BUSY' if busy else 'quiet'}: other processes used "
            f"{load['foreign_share']:.0%} of its {load['cpus']} CPUs during this run "
            f"({load['foreign_cpu_s']:.0f} CPU-s in {load['wall_s']:.0f} s); "
            f"{load['contaminated_blocks']} of {load['blocks']} timing blocks contaminated by "
            f"their load and dropped; {rows}.")


def _machine_line(m: dict) -> str:
    blas = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} (kernel {b.get('architecture')}, "
        f"{b.get('num_threads')} thread{'' if b.get('num_threads') == 1 else 's'})"
        if "error" not in b else b["error"]
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
        load_line(report.get("load")),
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
            f"| {r['config']} {layers_text(r['layers'])} | {r['phase']} | {r['dtype']} "
            f"| {backend} | {r['batch']} | {fmt_time(r['median_s'])} | {fmt_time(r['iqr_s'])} "
            f"| {fmt_count(r['samples_per_s'])} | {_fmt(r['speedup_vs_numpy'], '.2f', 'x')} "
            f"| {_fmt(r['gflops'], '.3g')} | {_fmt(r['gemm_fraction'], '.2f')} "
            f"| {_fmt(r['compile_s'], '.3f')} | {_fmt(r['max_rel_err'], '.1e')} "
            f"| {_fmt(r['weights_rel_err'], '.1e')} | {check_text(r)} |")
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
            verdict = ""
            if c["regression"]:
                verdict = "REGRESSION"
            elif c["ratio"] < 1.0 - cmp["threshold"]:  # slower, but not judged
                verdict = f"slower; {'a peer' if c['peer'] else 'noisy'}, not judged"
            backend = f"{c['backend']} (peer)" if c["peer"] else c["backend"]
            lines.append(f"| {c['config']} | {c['phase']} | {c['dtype']} | {backend} "
                         f"| {fmt_count(c['old_samples_per_s'])} "
                         f"| {fmt_count(c['samples_per_s'])} | {c['ratio']:.2f}x "
                         f"| {verdict} |")
    recs = recommend(report["records"])
    if recs:
        lines += ["", "## Which backend to use on this machine", "",
                  "The fastest accelnn backend per configuration, named alone only when it "
                  "leads every other one by more than the noise of their timings (peers are "
                  "context, never recommended):", ""]
        lines += [f"- {rec['text']}" for rec in recs]
    return "\n".join(lines) + "\n"


def plot(report: dict, path):
    """A PNG bar chart, one panel per (phase, dtype), configurations along x, one bar per backend:
    throughput relative to numpy (or to the run's first backend without numpy) on a linear axis
    from 0, so a bar twice as tall is twice as fast; each bar is labelled with its samples/s,
    and rows marked noisy are hatched. Returns the matplotlib Figure (closed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    s = report["settings"]
    ok = [r for r in report["records"] if r["samples_per_s"]]
    backends = [b for b in s["backends"] if any(r["backend"] == b for r in ok)]
    base = "numpy" if "numpy" in backends else (backends or ["-"])[0]
    fig, axes = plt.subplots(len(s["phases"]), len(s["dtypes"]), squeeze=False,
                             figsize=(5.5 * len(s["dtypes"]), 4 * len(s["phases"])))
    width = 0.8 / max(len(backends), 1)
    labels = {r["config"]: f"{r['config']}\n{layers_text(r['layers'])}\nbatch {r['batch']}"
              for r in sorted(report["records"], key=lambda r: r["phase"] != "predict")}
    for i, phase in enumerate(s["phases"]):
        for j, dtype in enumerate(s["dtypes"]):
            ax = axes[i][j]
            cell = {(r["config"], r["backend"]): r for r in ok
                    if (r["phase"], r["dtype"]) == (phase, dtype)}
            for k, b in enumerate(backends):
                xs, ys, rows = [], [], []
                for x, c in enumerate(s["configs"]):
                    if (c, b) in cell and (c, base) in cell:
                        r = cell[c, b]
                        xs.append(x + k * width)
                        ys.append(r["samples_per_s"] / cell[c, base]["samples_per_s"])
                        rows.append(r)
                bars = ax.bar(xs, ys, width, color=f"C{k}")
                for bar, r in zip(bars, rows):
                    if r["noisy"]:
                        bar.set_hatch("//")
                ax.bar_label(bars, [fmt_count(r["samples_per_s"]) for r in rows],
                             rotation=90, fontsize=7, padding=2)
            ax.set_xticks([x + width * (len(backends) - 1) / 2
                           for x in range(len(s["configs"]))],
                          [labels.get(c, c) for c in s["configs"]], fontsize=8)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.15)  # linear from 0, room for the labels
            ax.axhline(1.0, color="grey", linewidth=0.8)
            ax.set_title(f"{phase}, {dtype}")
            ax.set_ylabel(f"throughput relative to {base} (= 1)")
    axes[0][0].legend(handles=[Patch(color=f"C{k}", label=f"{b} (peer)" if b in PEERS else b)
                               for k, b in enumerate(backends)] +
                      [Patch(facecolor="white", edgecolor="black", hatch="//", label="noisy")],
                      fontsize=8)
    fig.suptitle(f"accelnn bench: {report['machine'].get('cpu')} (bars: samples/s; "
                 f"hatched: noisy)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig
