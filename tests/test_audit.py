"""Smoke tests of bench/audit.py, the robustness audit: its counting and judging logic on
made-up records, and a tiny real run of each category. They check the script, not the
library: what the library does with each bad input is the audit's report, not a test here."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(os.path.dirname(HERE), "bench", "audit.py")


@pytest.fixture(scope="module")
def audit():
    spec = importlib.util.spec_from_file_location("accelnn_bench_audit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


# ---------------------------------------------------------------------- judging
def test_mentions_matches_whole_words(audit):
    assert audit.mentions("seed must be an integer", "seed")
    assert not audit.mentions("SeedSequence expects int", "seed")
    assert audit.mentions("unknown metrics ('bogus',)", "metric")  # a plural
    assert audit.mentions("validation_split must be", "validation")  # _ separates
    assert audit.mentions("X has 2 features", "X")
    assert not audit.mentions("x has 2 features", "X")  # short names: case-sensitive
    assert not audit.mentions("Xval has 2 features", "X")


def test_judge_cli(audit):
    ok = {"rc": 2, "stdout": "", "escaped": None,
          "stderr": "usage: accelnn train ...\naccelnn train: error: epochs must be >= 1\n"}
    assert audit.judge_cli(ok) == (True, "accelnn train: error: epochs must be >= 1", "")
    tb = {**ok, "stderr": "Traceback (most recent call last):\n  ...\nValueError: x\n"}
    assert audit.judge_cli(tb)[0] is False
    accepted = {**ok, "rc": 0, "stderr": ""}
    assert audit.judge_cli(accepted)[2] == "accepted (exit status 0)"
    escaped = {**ok, "escaped": "KeyError: 'x'"}
    assert audit.judge_cli(escaped)[0] is False


def test_same_and_differences(audit):
    import numpy as np

    a = {"w": [np.array([1.0, np.nan])], "epoch": 3, "rng": {"s": 1}}
    b = {"w": [np.array([1.0, np.nan])], "epoch": 3, "rng": {"s": 1}}
    assert audit.differences(a, b) == []
    b["w"] = [np.array([1.0, np.nan], dtype=np.float32)]  # the dtype counts
    b["epoch"] = 4
    assert audit.differences(a, b) == ["epoch", "w"]


# ---------------------------------------------------------------------- counting
def test_tally_inputs_counts_and_lists_failures(audit):
    records = [
        {"i": 0, "surface": "fit", "arg": "X", "label": "NaN", "outcome": "raised",
         "type": "ValueError", "message": "X contains NaN", "clear": True, "unchanged": True,
         "problems": []},
        {"i": 1, "surface": "fit", "arg": "shuffle", "label": "'no'", "outcome": "accepted",
         "type": None, "message": "", "clear": False, "unchanged": False,
         "problems": ["accepted (no error)", "changed: weights"]},
        {"i": 2, "surface": "MLP()", "arg": "seed", "label": "-1", "outcome": "raised",
         "type": "ValueError", "message": "expected non-negative integer", "clear": False,
         "unchanged": None, "problems": ["the message does not name seed"]},
        {"i": 3, "outcome": "crash", "message": "the worker died (exit status -9)"},
    ]
    cases = [audit.Case("fit", "X", "NaN", None)] * 3 + [
        audit.Case("set_weights", "weights", "None", None, subject="clf")]
    section = audit.tally_inputs(records, cases)
    rows = {r.category: r for r in section.rows}
    fit = rows["bad inputs: fit(...)"]
    assert (fit.tried, fit.ok, fit.unchanged) == ("2", "1", "1")
    assert rows["bad inputs: MLP(...)"].unchanged == "n/a (no model yet)"
    assert rows["bad inputs: set_weights(...)"].tried == "1"  # the crash, labelled from cases
    total = rows["**bad inputs, all**"]
    assert (total.tried, total.ok) == ("**4**", "**1**")
    assert total.unchanged == "**1 of 3 with state**"  # the crash: not seen unchanged
    assert len(section.failures) == 3
    assert any("shuffle" in f and "changed: weights" in f for f in section.failures)
    assert any("worker died" in f for f in section.failures)


def test_tally_mutations(audit):
    records = [
        {"i": 0, "label": "bit 1", "outcome": "rejected"},
        {"i": 1, "label": "bit 2", "outcome": "rejected"},
        {"i": 2, "label": "bit 3", "outcome": "unchanged", "diff": []},
        {"i": 3, "label": "bit 4", "outcome": "differs", "diff": ["weights"]},
        {"i": 4, "label": "bit 5", "outcome": "differs", "diff": ["classes"]},
        {"i": 5, "label": "bit 6", "outcome": "error", "type": "RecursionError",
         "message": "too deep"},
        {"i": 6, "label": "bit 7", "outcome": "error", "type": "RecursionError",
         "message": "too deep"},
        {"i": 7, "label": "bit 8", "outcome": "skipped", "message": "does not apply"},
    ]
    section = audit.tally_mutations("flips", records, 1000, 8)
    (row,) = section.rows
    assert row.tried == "7"  # the skipped one is not counted
    assert row.ok == "2 rejected as ValueError"
    assert row.unchanged == ("1 loaded unchanged; 1 loaded, weights differ (valid data); "
                             "1 loaded, other fields differ (valid data)")
    assert "(7 of the file's 1,000 bits)" in row.category
    (failure,) = section.failures  # grouped
    assert "RecursionError: too deep (2x, e.g. bit 6; bit 7)" in failure
    assert any("differs in classes" in n and "bit 5" in n for n in section.notes)

    resumed = [{**r, "resume": k} for r, k in zip(records[:4], ["rejected", "resumed",
                                                                "diverged", "error"])]
    section = audit.tally_mutations("headers", resumed, 4, 4)
    load, resume = section.rows
    assert resume.tried == "4" and resume.ok == "1 rejected as ValueError"
    assert resume.unchanged == "1 resumed, 1 resumed then diverged (DivergenceError)"
    assert len(section.failures) == 1 and "fit(resume_from=)" in section.failures[0]


def test_tally_memory_picks_the_worst_ratio(audit):
    MiB = audit.MiB
    results = [
        {"label": "normal", "outcome": "loaded", "growth": 20 * MiB, "declared": 10 * MiB},
        {"label": "huge header", "outcome": "rejected", "growth": 10 * MiB,
         "declared": 10 * MiB},
        {"label": "junk", "outcome": "loaded", "growth": 2000 * MiB, "declared": 10 * MiB},
        {"label": "8 TiB", "outcome": "error", "type": "MemoryError", "message": "no",
         "growth": 0, "declared": 9 * MiB},
    ]
    section = audit.tally_memory(results)
    (row,) = section.rows
    assert (row.tried, row.ok, row.unchanged) == ("3", "1 rejected as ValueError", "1 loaded")
    assert row.memory.startswith("200.0x: 1.95 GiB for 10.00 MiB declared (junk)")
    assert row.memory.endswith("a normal file: 2.0x (20.00 MiB)")
    assert len(section.failures) == 2  # the error, and the growth beyond 2.5x


def test_judge_trial_and_tally_signals(audit):
    ok = {"signal": "SIGINT", "trial": 0, "after": 3, "offset": 0.01, "interrupted": True,
          "epoch": 7, "tmp_after_signal": [], "tmp_after_resume": [], "diff": []}
    bad = {"signal": "SIGINT", "trial": 1, "after": 5, "offset": 0.02, "interrupted": False,
           "rc": 1, "epoch": 9, "tmp_after_signal": [".accelnn-run.npz.0a1b2c3d.tmp"],
           "tmp_after_resume": [], "diff": ["weights"]}
    killed = {"signal": "SIGKILL", "trial": 0, "after": 4, "offset": 0.003, "epoch": 5,
              "tmp_after_signal": [".accelnn-run.npz.0a1b2c3d.tmp"], "tmp_after_resume": [],
              "diff": []}
    for rec in (ok, bad, killed):
        rec["resumable"], rec["equal"], rec["problems"] = audit.judge_trial(rec, None)
    assert (ok["resumable"], ok["equal"]) == (True, True)
    assert (bad["resumable"], bad["equal"]) == (False, False)
    assert len(bad["problems"]) == 3  # no KeyboardInterrupt, a temporary file, differs
    assert (killed["resumable"], killed["equal"]) == (True, True)  # cleared by the next save
    section = audit.tally_signals([killed, ok, bad])
    kill, interrupt = section.rows
    assert (kill.tried, kill.ok) == ("1", "1 resumable")
    assert interrupt.ok.startswith("1 resumable") and interrupt.unchanged.startswith("1 equal")
    assert len(section.failures) == 1
    assert any("1 of 1 kills landed while a checkpoint was being written" in n
               for n in section.notes)


def test_render(audit):
    section = audit.Section([audit.Row("bad inputs: fit(...)", "2", "1", "2")], ["a failure"],
                            ["a note"])
    text = audit.render([section], "title")
    assert "| bad inputs: fit(...) | 2 | 1 | 2 | – |" in text
    assert "Failures (1):\n- a failure" in text and "- a note" in text
    assert "Failures: none." in audit.render([audit.Section([])], "title")


def test_the_catalogue_is_large_and_covers_the_surface(audit):
    cases = audit.input_cases()
    assert len(cases) >= 150
    assert {c.surface for c in cases} == {"MLP()", "fit", "set_weights", "queries",
                                          "estimators", "CLI"}


# ---------------------------------------------------------------------- tiny real runs
def test_a_few_bad_inputs(audit, tmp_path):
    section = audit.audit_inputs(str(tmp_path), seed=0, count=5)
    total = section.rows[-1]
    assert total.tried == "**5**"
    assert section.rows[0].category == "bad inputs: MLP(...)"


def test_a_few_file_mutations(audit, tmp_path):
    section = audit.audit_files(str(tmp_path), seed=0, flips=6, truncations=4, headers=3,
                                members=3)
    rows = {r.category.split(" (")[0]: r for r in section.rows}
    assert rows["model file: single-bit flips"].tried == "6"
    assert rows["model file: truncations"].tried == "4"
    assert rows["model file: header edits"].tried == "3"
    assert rows["model file: header edits, fit(resume_from=)"].tried == "3"
    assert rows["model file: truncations"].ok == "4 rejected as ValueError"


def test_peak_memory_of_a_normal_and_a_hostile_file(audit, tmp_path):
    section = audit.audit_memory(str(tmp_path), seed=0, keys=("layers7",))
    (row,) = section.rows
    assert row.tried == "1"
    assert "a normal file:" in row.memory


@pytest.mark.slow
def test_one_kill_and_one_interrupt(audit, tmp_path):
    section = audit.audit_signals(str(tmp_path), seed=0, kills=1, interrupts=1)
    assert [r.tried for r in section.rows] == ["1", "1"]
    assert {r.category.split(" ")[0] for r in section.rows} == {"kill", "Ctrl-C"}


def test_the_command_line_options(audit):
    a = audit.parse_args(["--quick", "--seed", "3", "--markdown", "x.md", "--strict"])
    assert (a.quick, a.seed, a.markdown, a.strict) == (True, 3, "x.md", True)
    assert audit.main(["--categories", "bogus"]) == 2
