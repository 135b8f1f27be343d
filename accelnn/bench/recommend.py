"""The answer to "which backend should I use on this machine": per configuration, the accelnn
backend with the highest throughput, named only when it is faster than every other one by more
than the noise of their timings; else "either". Rows that stayed noisy because the machine was
busy decide nothing: then it says "either", with the measured ratio marked unconfirmed. Peers
are context, never recommended.

A pure function of the report's records, so it is tested on constructed ones.
"""

from __future__ import annotations

from .configs import DTYPES, RECOMMEND_BY
from .load import BUSY
from .text import config_text

# A backend is named alone only when it is faster than each other backend by more than
# max(MIN_MARGIN, the two rows' relative IQRs added): within-run IQRs understate the noise
# between runs (on a shared 2-core machine the numba / numpy ratio of one configuration moved by
# 10-15% from run to run). A row without a single clean block is no evidence at all: under
# 1.5-2 CPUs of foreign load one measured 243x slower than on a quiet machine, with a small IQR.
MIN_MARGIN = 0.15


def _usable(r: dict) -> bool:
    return r["status"] == "ok" and r["within_limit"] is not False and bool(r["samples_per_s"])


def spread(r: dict) -> float:
    """A row's relative noise: its IQR over its median."""
    return (r["iqr_s"] or 0.0) / r["median_s"]


def _basis(rows: list[dict]) -> tuple[str, str] | None:
    """The (phase, dtype) to weigh: the first phase of RECOMMEND_BY with a usable accelnn row
    (else the first such phase measured), in the first dtype of DTYPES that has one."""
    usable = [r for r in rows if not r["peer"] and _usable(r)]
    phases = [p for p in RECOMMEND_BY if any(r["phase"] == p for r in usable)] or \
        list(dict.fromkeys(r["phase"] for r in usable))
    if not phases:
        return None
    measured = {r["dtype"] for r in usable if r["phase"] == phases[0]}
    return phases[0], next(d for d in [*DTYPES, *sorted(measured)] if d in measured)


def recommend(records: list[dict], min_margin: float = MIN_MARGIN) -> list[dict]:
    """One recommendation per configuration, in the records' order: config, layers, batch,
    phase and dtype weighed; backend (named alone) or None with `either` (the fastest and every
    backend within the margin of it, in the run's order so that the answer reads the same from
    run to run); ratio of the fastest over the runner-up, margin (None when unconfirmed), noisy
    (a compared row stayed noisy because the machine was busy: then `either` lists every
    backend); peers (each peer's
    throughput over the fastest's); excluded (accelnn backends whose row failed or is beyond
    its error limit); and the sentence saying it (text)."""
    out = []
    for config in dict.fromkeys(r["config"] for r in records):
        rows = [r for r in records if r["config"] == config]
        rec = {"config": config, "layers": rows[0]["layers"], "batch": rows[0]["batch"],
               "phase": None, "dtype": None, "backend": None, "either": [], "ratio": None,
               "runner_up": None, "margin": None, "noisy": False, "peers": {},
               "excluded": {}}
        basis = _basis(rows)
        if basis is None:
            rec["text"] = f"{config_text(rec)}: no accelnn backend ran successfully"
            out.append(rec)
            continue
        at = [r for r in rows if (r["phase"], r["dtype"]) == basis]
        cands = sorted((r for r in at if not r["peer"] and _usable(r)),
                       key=lambda r: -r["samples_per_s"])
        best = cands[0]
        rec.update(phase=basis[0], dtype=basis[1], batch=best["batch"],
                   excluded={r["backend"]: r["error"] or "error beyond its limit"
                             for r in at if not r["peer"] and not _usable(r)},
                   peers={r["backend"]: r["samples_per_s"] / best["samples_per_s"]
                          for r in at if r["peer"] and r["status"] == "ok"
                          and r["samples_per_s"]})
        if len(cands) > 1:
            second = cands[1]
            rec.update(ratio=best["samples_per_s"] / second["samples_per_s"],
                       runner_up=second["backend"])
            if any(r["noisy"] == BUSY for r in cands):
                rec.update(noisy=True, either=[r["backend"] for r in at if r in cands])
            else:
                margins = {r["backend"]: max(min_margin, spread(best) + spread(r))
                           for r in cands[1:]}
                close = [r for r in cands[1:] if best["samples_per_s"] / r["samples_per_s"]
                         <= 1 + margins[r["backend"]]]
                rec.update(margin=margins[second["backend"]],
                           either=[r["backend"] for r in at if r is best or r in close]
                           if close else [])
        if not rec["either"]:
            rec["backend"] = best["backend"]
        rec["text"] = _sentence(rec, best)
        out.append(rec)
    return out


def _sentence(rec: dict, best: dict) -> str:
    what = f"{RECOMMEND_BY.get(rec['phase'], rec['phase'])} throughput"
    head = f"{config_text(rec)} ({rec['dtype']})"
    fast = best["backend"]
    if rec["ratio"] is None:
        text = f"{head}: {fast}, the only accelnn backend measured"
    elif rec["backend"]:
        text = f"{head}: {fast}, {rec['ratio']:.2f}x {rec['runner_up']}'s {what}"
    else:
        names = ", ".join(rec["either"][:-1]) + f" or {rec['either'][-1]}"
        ratio = f"{rec['ratio']:.2f}x {rec['runner_up']}'s"
        text = (f"{head}: either {names}: unconfirmed, the machine was busy while they were "
                f"timed ({fast}'s {what} measured {ratio}); rerun on a quiet machine"
                if rec["noisy"] else
                f"{head}: either {names}: {fast}'s {what} is {ratio}, within the noise "
                f"(margin {rec['margin']:.0%})")
    if rec["peers"]:
        text += "; peers: " + ", ".join(f"{p} {x:.2f}x {fast}" for p, x in rec["peers"].items())
    if rec["excluded"]:
        text += "; not weighed (failed or beyond its error limit): " + ", ".join(rec["excluded"])
    return text
