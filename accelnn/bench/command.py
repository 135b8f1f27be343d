"""`accelnn bench` on the command line: its options, and the run that prints the table, writes
what was asked and sets the exit status."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

from .configs import CONFIGS, BenchError
from .report import compare, plot, to_markdown
from .runner import run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `accelnn bench`."""
    parser.description = ("Throughput (median samples/s, GFLOP/s, fraction of the GEMM rate, "
                          "JIT compile time) and numerical agreement with a float64 NumPy "
                          "reference, of every backend on the standard configurations.")
    parser.epilog = ("Progress: one line per finished row on stderr (a tqdm bar on a terminal "
                     "when tqdm is installed). The table, ending with the recommended backend "
                     "per configuration, goes to stdout; each file written is named on stderr. "
                     "Exit status: 0; 1 when an accelnn backend's row failed or is beyond its "
                     "error limit or --compare found a regression in one (peers and rows "
                     "marked noisy are reported, not judged); 2 for unknown names or bad "
                     "options.")
    parser.add_argument("--configs", help=f"comma-separated, from {', '.join(CONFIGS)} "
                                          "(default: all)")
    parser.add_argument("--backends", help="comma-separated accelnn backends and peers "
                                           "(numpy-plain: a plain NumPy transcription; torch, "
                                           "jax); default: all, those that cannot run here "
                                           "are listed as skipped with the reason")
    parser.add_argument("--dtypes", help="float32, float64 or both (default: both)")
    parser.add_argument("--phases", help="predict, train_step or both (default: both)")
    parser.add_argument("--quick", action="store_true",
                        help="CI mode: 0.05 s and 3 samples per row instead of 0.5 s and 5")
    parser.add_argument("--min-time", type=float, metavar="SECONDS",
                        help="minimum timing per row (overrides the mode's)")
    parser.add_argument("--seed", type=int, default=0, help="data and weights seed")
    parser.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    parser.add_argument("--plot", metavar="PATH",
                        help="write a PNG bar chart of throughput relative to numpy, linear "
                             "from 0 (needs matplotlib: pip install 'accelnn[bench]')")
    parser.add_argument("--compare", metavar="OLD_JSON",
                        help="ratio of samples/s to an earlier --json report; accelnn rows "
                             "slower by more than --threshold are regressions")
    parser.add_argument("--threshold", type=float, default=0.10,
                        help="regression threshold for --compare (default 0.10: 10%% slower)")


def main(args: argparse.Namespace) -> int:
    """Run `accelnn bench`: print the table, write what was asked and name each file written.
    Returns 0, or 1 when an accelnn backend's row failed, an error is beyond its limit or
    --compare found a regression (peers never change it). Bad options raise BenchError before
    anything runs."""
    if not 0 <= args.threshold < 1:
        raise BenchError(f"--threshold must be in [0, 1), got {args.threshold}")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise BenchError("--plot needs matplotlib: pip install 'accelnn[bench]'")
    old = None
    if args.compare:
        try:
            with open(args.compare) as f:
                old = json.load(f)
        except (OSError, ValueError) as exc:
            raise BenchError(f"--compare: cannot read {args.compare}: {exc}") from exc
    report = run(args.configs, args.backends, args.dtypes, args.phases, quick=args.quick,
                 min_time=args.min_time, seed=args.seed)
    if old is not None:
        report["compare"] = compare(report, old, args.threshold)
    text = to_markdown(report)
    print(text, end="", flush=True)
    written = []
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        written.append(("JSON report", args.json))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
        written.append(("Markdown table", args.markdown))
    if args.plot:
        plot(report, args.plot)
        written.append(("plot", args.plot))
    for what, path in written:
        print(f"wrote {what}: {os.path.abspath(path)}", file=sys.stderr)
    # Peers are reported, not judged: a peer's rounding or speed is not accelnn's to answer for.
    bad = any(r["status"] != "ok" or r["within_limit"] is False
              for r in report["records"] if not r["peer"])
    regressed = any(c["regression"] for c in report.get("compare", {}).get("rows", []))
    return 1 if bad or regressed else 0
