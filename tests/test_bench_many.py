"""The many_models benchmark row (accelnn bench-many): a tiny run of its report, table and
command, and its refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from accelnn import cli
from accelnn.bench import BenchError
from accelnn.bench import many as bench_many

TINY = replace(bench_many.MANY_MODELS, rows=96, epochs=1, ks=(2, 3), target_k=3)


def test_a_tiny_run_reports_every_k():
    report = bench_many.run_many(rounds=1, backend="numpy", config=TINY)
    assert [r["k"] for r in report["records"]] == [2, 3]
    for r in report["records"]:
        assert r["one_pass_s"] > 0 and r["sequential_s"] > 0
        assert r["ratio"] == pytest.approx(r["sequential_s"] / r["one_pass_s"])
        assert r["sequential_fits_timed"] == r["k"]
    assert report["records"][0]["growth"] == 1.0
    assert report["agreement"]["within_limit"], report["agreement"]
    assert report["target"]["met"] in (True, False)
    text = bench_many.to_markdown(report)
    assert "| 3 |" in text and "agreement (float64" in text and "target:" in text


def test_the_command_writes_json(tmp_path, capsys):
    out = tmp_path / "many.json"
    status = cli.main(["bench-many", "--ks", "2", "--epochs", "1", "--rounds", "1",
                       "--backend", "numpy", "--sequential", "1", "--json", str(out)])
    assert status == 0
    report = json.loads(out.read_text())
    assert report["records"][0]["sequential_fits_timed"] == 1
    assert "many_models" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs", [{"ks": [0]}, {"rounds": 0}, {"sequential": 0},
                                    {"threads": 0}, {"epochs": 0}])
def test_bad_settings(kwargs):
    with pytest.raises(BenchError):
        bench_many.run_many(backend="numpy", config=TINY, **kwargs)


def test_bad_ks_on_the_command_line():
    assert cli.main(["bench-many", "--ks", "two"]) == 2
