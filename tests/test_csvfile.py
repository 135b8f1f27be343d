"""Reading CSV files (accelnn.csvfile, through accelnn.tabular): the delimiter, the decimal
mark and the header detected; the habits of pandas and of European spreadsheets read or
refused with what to pass; and the two readers -- pandas where installed, the csv module
otherwise -- giving the same arrays."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from accelnn.tabular import load_data, read_table

HAS_PANDAS = importlib.util.find_spec("pandas") is not None


@pytest.fixture(params=["pandas", "csv"])
def reader(request, monkeypatch):
    """Run a test with pandas reading the cells, and again with the csv module (pandas
    hidden)."""
    if request.param == "pandas" and not HAS_PANDAS:
        pytest.skip("pandas is not installed")
    if request.param == "csv":
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "pandas" else real(name, *a))
    return request.param


def _write(path, text: str, encoding="utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def _read(path, reader, **kwargs):
    table = read_table(path, **kwargs)
    assert ("read by pandas" in table.notes) == (reader == "pandas"), table.notes
    return table


def test_a_numeric_header_over_text_labels_is_a_header(tmp_path, reader):
    """hunt-04: pandas writes 0,1,2,3 for unnamed columns; the row was trained as a sample
    of a new class "3"."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)).round(3)
    labels = np.where(X[:, 0] > 0, "yes", "no")
    path = _write(tmp_path / "data.csv", "0,1,2,3\n" + "".join(
        ",".join(map(str, row)) + f",{lab}\n" for row, lab in zip(X, labels)))
    table = _read(path, reader)
    assert table.X.tolist() == X.tolist() and table.y.tolist() == labels.tolist()
    assert table.names == ["0", "1", "2"]
    assert any("the names pandas writes for unnamed columns" in n for n in table.notes)


@pytest.mark.skipif(not HAS_PANDAS, reason="pandas writes the files")
@pytest.mark.parametrize("index", [False, True])
def test_what_pandas_writes_reads_back(tmp_path, reader, index):
    """to_csv of an unnamed frame (header 0,1,2,3 over numbers) and with its row index (an
    empty first name over the row numbers, shuffled): the index is left out."""
    import pandas as pd

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    frame = pd.DataFrame(np.c_[X, y]).sample(frac=1.0, random_state=0)
    frame.to_csv(tmp_path / "p.csv", index=index)
    table = _read(str(tmp_path / "p.csv"), reader)
    assert np.array_equal(table.X, frame.to_numpy()[:, :3])
    assert table.y.dtype == np.int64 and table.y.tolist() == frame[3].astype(int).tolist()
    assert table.names == ["0", "1", "2"]
    assert any("pandas' row index: left out" in n for n in table.notes) == index


@pytest.mark.skipif(not HAS_PANDAS, reason="pandas writes the file")
def test_a_european_spreadsheet_export_reads_back_exactly(tmp_path, reader):
    """sep=';', decimal=',' (what Excel writes in much of Europe), a BOM and CRLF."""
    import pandas as pd

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(50, 3)) * [1, 1e3, 1e-3], columns=["a", "b", "c"])
    frame["label"] = np.where(frame["a"] > 0, "oui", "non")
    frame.to_csv(tmp_path / "e.csv", sep=";", decimal=",", index=False, encoding="utf-8-sig",
                 lineterminator="\r\n")
    table = _read(str(tmp_path / "e.csv"), reader)
    assert np.array_equal(table.X, frame[["a", "b", "c"]].to_numpy())
    assert table.y.tolist() == frame["label"].tolist() and table.names == ["a", "b", "c"]
    assert table.notes[:2] == ["delimiter ';' (detected)", "decimal comma (detected)"]


def test_semicolons_decimal_commas_quotes_bom_crlf_and_tabs(tmp_path, reader):
    text = "\ufeffa;b;label\r\n1,5;2,25;cat\r\n3,1;-4;dog\r\n\"5,5\";\"1e3\";cat\r\n"
    table = _read(_write(tmp_path / "s.csv", text), reader)
    assert table.X.tolist() == [[1.5, 2.25], [3.1, -4.0], [5.5, 1000.0]]
    assert table.y.tolist() == ["cat", "dog", "cat"]
    table = _read(_write(tmp_path / "t.csv", "a\tb\ty\n1.5\t2\t0\n3\t4.5\t1\n"), reader)
    assert table.X.tolist() == [[1.5, 2.0], [3.0, 4.5]] and table.y.tolist() == [0, 1]
    assert table.notes[0] == "delimiter '\\t' (detected)"
    quoted = _write(tmp_path / "q.csv", 'a,b,y\n"1,5","2",0\n"3","4,25",1\n')
    X, y = load_data(quoted, decimal=",")
    assert X.tolist() == [[1.5, 2.0], [3.0, 4.25]] and y.tolist() == [0, 1]


@pytest.mark.parametrize("text, kwargs, match", [
    ("a;b;y\n1.234,5;2;0\n3;4;1\n", {},
     r"line 2, column 1 \('a'\): '1\.234,5' is not a number: thousands separators are not "
     r"read: write the numbers without them"),
    ("a;b;y\n1,5;2.5;0\n3;4;1\n", {},
     r"line 2, column 2 \('b'\): '2\.5' has a '\.', but the decimal mark here is ',': if "
     r"'\.' is the decimal mark, pass it \(--decimal \.\)"),
    ('a,b,y\n"1,5",2,0\n3,4,1\n', {},
     r"line 2, column 1 \('a'\): '1,5' is not a number: if ',' is the decimal mark, pass it "
     r"\(--decimal ,\)"),
    ('a,b,y\n"1 234",2,0\n3,4,1\n', {}, r"'1 234' is not a number: thousands separators"),
    ("a;b;y\n1;2;0\n3;4\n", {},
     r"line 3: 2 cells, but line 1 has 3; the delimiter ';' was detected from the first "
     r"lines: pass another if it is wrong \(--delimiter\)"),
    ("a,b;c\n1;2,3,4\n5,6\n", {},
     r"cannot tell the delimiter from the first lines \(they hold ';' and ',' in varying "
     r"numbers\); pass it \(--delimiter ';'"),
    ("a,b,y\n1,2,0\n", {"delimiter": "ab"}, r"the delimiter must be one character"),
    ("a,b,y\n1,2,0\n", {"decimal": ";"}, r"the decimal mark must be '\.', ',' or 'auto'"),
])
def test_spreadsheet_habits_are_refused_saying_what_to_pass(tmp_path, reader, text, kwargs,
                                                            match):
    with pytest.raises(ValueError, match=match):
        load_data(_write(tmp_path / "b.csv", text), **kwargs)


def test_text_that_is_not_utf8_is_named_by_line(tmp_path, reader):
    path = _write(tmp_path / "l.csv", "a,b,y\n1,2,caf\u00e9\n3,4,th\u00e9\n", "latin-1")
    with pytest.raises(ValueError, match=r"l\.csv, line 2: byte 0xe9 at character 8 is not "
                                         r"UTF-8 .*save the file as UTF-8"):
        load_data(path)


@pytest.mark.parametrize("lines, header, names", [
    (["a,b,y", "1,2,0", "3,4,1"], "auto", ["a", "b"]),       # text over numbers
    (["1,2,0", "3,4,1"], "auto", None),                       # numbers only
    (["1,2,cat", "3,4,dog"], "auto", None),                   # text labels in every row
    (["x,y", "1,cat", "2,dog"], "auto", ["x"]),
    (["0,1,2", "1.5,2,0", "3,4,1"], "auto", ["0", "1"]),      # pandas' names
    (["0,1,2", "1.5,2,0", "3,4,1"], False, None),             # told: data
    (["1,2,0", "3,4,1"], True, ["1", "2"]),                   # told: a header
])
def test_the_header_rule(tmp_path, reader, lines, header, names):
    table = _read(_write(tmp_path / "h.csv", "\n".join(lines) + "\n"), reader, header=header)
    assert table.names == names
    assert len(table.X) == len(lines) - (names is not None)


def test_both_readers_give_the_same_arrays(tmp_path, monkeypatch):
    """Exact floats (pandas' parser agrees with float() to the last bit), integer targets
    beyond 2**53 read exactly, whole-number float cells as int64, text labels stripped."""
    pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    digits = rng.integers(0, 10, size=(300, 17))
    exps = rng.integers(-300, 300, size=300)
    cells = [f"{d[0]}.{''.join(map(str, d[1:]))}e{e}" for d, e in zip(digits, exps)]
    files = {
        "floats": "a,b,y\n" + "".join(f"{c},{i},{i % 3}\n" for i, c in enumerate(cells)),
        "big": "a,y\n" + "".join(f"{i},{2 ** 60 + i}\n" for i in range(20)),
        "whole": "a,y\n1,3.0\n2,-0.0\n3,1e3\n",
        "labels": "a;y\n1,5; cat \n2; dog\n",
    }
    results = {}
    real = importlib.util.find_spec
    for use_pandas in (True, False):
        if not use_pandas:
            monkeypatch.setattr(importlib.util, "find_spec",
                                lambda name, *a: None if name == "pandas" else real(name, *a))
        for name, text in files.items():
            table = read_table(_write(tmp_path / f"{name}.csv", text))
            results.setdefault(name, []).append(table)
    for name, (a, b) in results.items():
        assert "read by pandas" in a.notes and "read by pandas" not in b.notes, name
        assert a.X.tobytes() == b.X.tobytes() and a.y.dtype == b.y.dtype, name
        assert a.y.tolist() == b.y.tolist() and a.names == b.names, name
    assert results["floats"][1].X[:, 0].tolist() == [float(c) for c in cells]
    assert results["big"][0].y.tolist() == [2 ** 60 + i for i in range(20)]
    assert results["whole"][0].y.dtype == np.int64
    assert results["labels"][0].y.tolist() == ["cat", "dog"]
