#!/usr/bin/env bash
# The GPU check, one command for a machine with an NVIDIA GPU and no network:
#
#     bash bench/gpu_check.sh OUTDIR
#
# 1. installs accelnn from this working tree into the current Python environment
#    (pip install --no-deps --no-build-isolation -e .: cupy, numba and pytest-benchmark must
#    already be there);
# 2. `accelnn info` (GPU, CUDA versions, TF32 setting, why any backend cannot run);
# 3. the test suite with ACCELNN_BACKEND=cupy, the gpu-marked tests included (junit XML);
# 4. `accelnn bench` for numpy, numba and cupy on every standard configuration, then a quick
#    float32 train-step run of cupy with ACCELNN_CUDA_GRAPHS=0, to show what the graphs give;
# 5. a report, OUTDIR/gpu_check.json and OUTDIR/gpu_check.md, whose summary is printed last:
#    every step's status and time, the test counts, float32 train-step throughput per backend,
#    cupy's fraction of its own cuBLAS GEMM rate, agreement, and the targets of issue 4
#    (wide >= 20x numba and >= 60% of the GEMM rate, mnist >= 5x numba).
#
# Every step runs under `timeout`, within a total of 285 s. The exit status is non-zero when the
# install, the tests or the benchmark fail (a benchmark row failing or outside its error limit
# counts) or cupy cannot run; the throughput targets are reported, not enforced.
# PYTHON selects the interpreter (default: python3).
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: bash bench/gpu_check.sh OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
out="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.." || exit 2
py="${PYTHON:-python3}"
deadline=$((SECONDS + 285))
: > "$out/steps.tsv"

# step NAME LIMIT_S LOGFILE CMD...: runs CMD under timeout (at most what is left of the total),
# output to LOGFILE, and appends "name rc seconds limit" to steps.tsv.
step() {
    local name="$1" limit="$2" log="$3" left t0 rc
    shift 3
    left=$((deadline - SECONDS - 15))
    [ "$left" -lt "$limit" ] && limit="$left"
    if [ "$limit" -le 0 ]; then
        echo "skipped: no time left" > "$log"
        printf '%s\t%s\t%s\t%s\n' "$name" 124 0 0 >> "$out/steps.tsv"
        return
    fi
    echo "gpu_check: $name (limit ${limit}s) ..." >&2
    t0=$SECONDS
    timeout -k 5 "$limit" "$@" > "$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" >> "$out/steps.tsv"
}

step install 90 "$out/install.log" \
    "$py" -m pip install --no-deps --no-build-isolation --no-input -e .
step nvidia-smi 15 "$out/nvidia-smi.txt" nvidia-smi
step info 60 "$out/info.txt" "$py" -m accelnn.cli info
step tests 180 "$out/pytest.txt" env ACCELNN_BACKEND=cupy \
    "$py" -m pytest -q -p no:cacheprovider -o junit_family=legacy --junitxml "$out/junit.xml" tests
step bench 150 "$out/bench.log" "$py" -m accelnn.cli bench --backends numpy,numba,cupy \
    --json "$out/bench.json" --markdown "$out/bench.md"
step bench-no-graphs 60 "$out/bench-no-graphs.log" env ACCELNN_CUDA_GRAPHS=0 \
    "$py" -m accelnn.cli bench --backends cupy --dtypes float32 --phases train_step --quick \
    --json "$out/bench-no-graphs.json"

"$py" - "$out" <<'EOF'
"""Write OUTDIR/gpu_check.json and gpu_check.md from the steps' files; print the summary."""
import json
import os
import sys
import xml.etree.ElementTree as ET

out = sys.argv[1]


def read(name, tail=None):
    try:
        with open(os.path.join(out, name), errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return "\n".join(text.splitlines()[-tail:]) if tail else text


steps = {}
for line in (read("steps.tsv") or "").splitlines():
    name, rc, seconds, limit = line.split("\t")
    rc = int(rc)
    steps[name] = {"rc": rc, "seconds": int(seconds), "limit_s": int(limit),
                   "timed_out": rc in (124, 137)}

tests = None
try:
    root = ET.parse(os.path.join(out, "junit.xml")).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    cupy_cases = [c for c in suite.iter("testcase") if c.get("classname", "").endswith("test_cupy")]
    counts["cupy_tests"] = len(cupy_cases)
    counts["cupy_tests_skipped"] = sum(c.find("skipped") is not None for c in cupy_cases)
    counts["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                              if c.find("failure") is not None or c.find("error") is not None]
    tests = counts
except (OSError, ET.ParseError, AttributeError):
    pass

cupy_reason = None
try:
    from accelnn import available_backends

    status = available_backends()["cupy"]
    cupy_reason = None if status.available else status.reason
except Exception as exc:
    cupy_reason = f"{type(exc).__name__}: {exc}"

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


bench, no_graphs = load("bench.json"), load("bench-no-graphs.json")
eager = {r["config"]: r for r in (no_graphs or {}).get("records", ())
         if r["status"] == "ok" and r["phase"] == "train_step" and r["dtype"] == "float32"}

rows, targets, errors = {}, [], []
if bench:
    for r in bench["records"]:
        if r["status"] != "ok" or r["within_limit"] is False:
            errors.append(f"{r['config']} {r['phase']} {r['backend']} {r['dtype']}: "
                          f"{r['error'] or 'max rel err %.1e' % r['max_rel_err']}")
        if r["dtype"] == "float32" and r["phase"] == "train_step":
            rows[(r["config"], r["backend"])] = r

    def rate(config, backend):
        r = rows.get((config, backend))
        return r and r["samples_per_s"]

    def target(what, value, goal):
        targets.append({"target": what, "value": value, "goal": goal,
                        "met": value is not None and value >= goal})

    for config, goal in (("wide", 20.0), ("mnist", 5.0)):
        gpu, cpu = rate(config, "cupy"), rate(config, "numba")
        target(f"{config} train step, cupy / numba samples/s", gpu / cpu if gpu and cpu else None,
               goal)
    wide = rows.get(("wide", "cupy"))
    target("wide train step, cupy GFLOP/s / cuBLAS GEMM rate (gemm_fraction)",
           wide and wide["gemm_fraction"], 0.6)

ok = (steps.get("install", {}).get("rc") == 0 and steps.get("tests", {}).get("rc") == 0
      and steps.get("bench", {}).get("rc") == 0 and cupy_reason is None)
report = {"ok": ok, "cupy_unavailable_reason": cupy_reason, "steps": steps, "tests": tests,
          "pytest_tail": read("pytest.txt", 15), "info": read("info.txt"),
          "nvidia_smi": read("nvidia-smi.txt"), "targets": targets, "bench_problems": errors,
          "train_step_float32": [
              {k: r[k] for k in ("config", "backend", "device", "samples_per_s", "median_s",
                                 "gflops", "gemm_gflops", "gemm_fraction", "max_rel_err")}
              for r in rows.values()],
          "cupy_without_graphs_samples_per_s": {c: r["samples_per_s"] for c, r in eager.items()},
          "bench_machine": bench and bench.get("machine")}
with open(os.path.join(out, "gpu_check.json"), "w") as f:
    json.dump(report, f, indent=1)


def fmt(x, spec=".3g"):
    return "-" if x is None else format(x, spec)


md = [f"# accelnn GPU check: {'OK' if ok else 'FAILED'}", ""]
if cupy_reason:
    md += [f"**cupy cannot run here:** {cupy_reason}", ""]
md += ["| step | status | seconds |", "|---|---|---|"]
for name, s in steps.items():
    status = "timed out" if s["timed_out"] else ("ok" if s["rc"] == 0 else f"exit {s['rc']}")
    md.append(f"| {name} | {status} | {s['seconds']} / {s['limit_s']} |")
md.append("")
if tests:
    md.append(f"Tests (ACCELNN_BACKEND=cupy): {tests['passed']} passed, {tests['failures']} "
              f"failed, {tests['errors']} errors, {tests['skipped']} skipped; tests/test_cupy.py: "
              f"{tests['cupy_tests'] - tests['cupy_tests_skipped']} of {tests['cupy_tests']} ran.")
    md += [f"- FAILED {t}" for t in tests["failed_tests"][:20]]
else:
    md.append("Tests: no junit report (see pytest.txt).")
md.append("")
if rows:
    configs = sorted({c for c, _ in rows}, key=["seed", "mnist", "wide", "deep"].index)
    md += ["Train step, float32, samples/s (median):", "",
           "| config | numpy | numba | cupy | cupy / numba | cupy gemm_fraction "
           "| cupy without CUDA graphs (quick run) |", "|---|---|---|---|---|---|---|"]
    for c in configs:
        got = {b: rows.get((c, b)) for b in ("numpy", "numba", "cupy")}
        sps = {b: r and r["samples_per_s"] for b, r in got.items()}
        ratio = sps["cupy"] / sps["numba"] if sps["cupy"] and sps["numba"] else None
        md.append(f"| {c} | {fmt(sps['numpy'])} | {fmt(sps['numba'])} | {fmt(sps['cupy'])} | "
                  f"{fmt(ratio)} | {fmt(got['cupy'] and got['cupy']['gemm_fraction'], '.2f')} | "
                  f"{fmt(eager[c]['samples_per_s'] if c in eager else None)} |")
    md.append("")
    md += ["Targets (issue 4; reported, not enforced):", ""]
    md += [f"- {'met' if t['met'] else 'MISSED'}: {t['target']} = {fmt(t['value'])} "
           f"(goal >= {t['goal']})" for t in targets]
    md.append("")
if bench is None:
    md += ["Benchmark: no bench.json (see bench.log).", ""]
md.append(f"Benchmark rows failed or outside their error limit: {len(errors)}")
md += [f"- {e}" for e in errors[:20]]
md += ["", f"Files in {out}: gpu_check.json, gpu_check.md, info.txt, pytest.txt, junit.xml, "
       "bench.json, bench.md, bench.log, bench-no-graphs.json, bench-no-graphs.log, install.log, "
       "nvidia-smi.txt, steps.tsv"]
with open(os.path.join(out, "gpu_check.md"), "w") as f:
    f.write("\n".join(md) + "\n")
print("\n".join(md))
sys.exit(0 if ok else 1)
EOF
