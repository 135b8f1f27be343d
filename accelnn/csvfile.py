"""Reading a CSV file of numbers with one target column (numbers or text labels): first what
the file looks like -- its delimiter, decimal mark and header -- from its first lines, then
its cells.

    table = read_csv("wine.csv", target="auto")   # Table: X, y, names, notes

How the file is read:

- delimiter: csv.Sniffer, among ; tab | and ',' in that order of preference. ';', tab and
  '|' never occur in a number while ',' is also a decimal mark: on a ';' file of decimal
  commas every line holds as many commas as semicolons, and csv.Sniffer's own order
  (',' first) would split the numbers.
- decimal mark: ',' when the delimiter is not ',' and some cell of the first lines is a
  number only when read with a decimal comma ("1,5"); otherwise '.'. Thousands separators
  are refused (saying so), never guessed: "1.234" is 1234 in Germany and 1.234 in England.
- header: the first row names the columns when
  (1) its cells are 0, 1, ..., n-1, the names pandas writes for unnamed columns
      (pd.DataFrame(X).to_csv(index=False)), or it starts with an empty cell over distinct
      whole numbers, the nameless row index that pd.DataFrame(...).to_csv() writes, or
  (2) some column has text there and a number on every later line sampled, or a number
      there and text on every later line (empty cells aside), or
  (3) the file has one row, all text.
  csv.Sniffer.has_header is not used: it judges a text column by the length of its cells
  and leaves out columns whose lengths vary (labels such as yes/no), and reads numbers
  through complex(), which takes no decimal comma; on a header 0,1,2,3 over yes/no labels
  it answers "no header".
- a first column named "" or "Unnamed: 0" (pandas' row index, written by to_csv() without
  index=False) holding distinct whole numbers is left out of the features.
- cells: pandas.read_csv where pandas is installed (about 20 times faster on large files),
  its result taken only when every feature cell is a finite number and every target cell a
  number or non-empty text; otherwise, and without pandas, the standard csv module reads
  the file and names the line and column of the first cell that is not.

Every problem is a ValueError naming the file and, for a cell, its line and column, and
what to pass instead (delimiter/--delimiter, decimal/--decimal, header/--header).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import re
from dataclasses import dataclass, field

import numpy as np

DELIMITERS = ";\t|,"  # csv.Sniffer's candidates, the preferred first
SAMPLE_CHARS = 1 << 16  # what the dialect and the header are judged on
SAMPLE_ROWS = 200
INT64 = np.iinfo(np.int64)
DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")
GROUPED = re.compile(r"[+-]?\d{1,3}(?:[,. '\u00a0\u202f]\d{3})+(?:[.,]\d*)?")
INDEX_NAMES = ("", "Unnamed: 0")


@dataclass
class Table:
    """What read_csv found: X (rows, features) float64; y the targets (None when no target
    was asked for); names the feature columns' names (None without a header); notes, one
    phrase each, how the file was read (delimiter, decimal mark, header and why, left-out
    columns, the reader)."""

    X: np.ndarray
    y: np.ndarray | None
    names: list[str] | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Layout:
    """How a file is laid out, as decided from its first lines."""

    path: str
    delimiter: str
    decimal: str
    header: bool
    names: list[str] | None
    n_cols: int
    first_line: int  # the line of the first row (the header, when there is one)
    sniffed: bool  # the delimiter was detected, not given
    notes: list[str]

    def where(self, line: int, j: int) -> str:
        name = f" ({self.names[j]!r})" if self.names else ""
        return f"{self.path}, line {line}, column {j + 1}{name}"


def read_csv(path: str, target, header="auto", delimiter: str = "auto",
             decimal: str = "auto") -> Table:
    """The table in the CSV file at `path` (see the module docstring).

    target: the target column (see column_index), or None (features only).
    header: True, False or "auto". delimiter: one character, or "auto" to detect it.
    decimal: ".", "," or "auto".
    """
    if delimiter != "auto" and (len(delimiter) != 1 or delimiter in '"\r\n'):
        raise ValueError(f"the delimiter must be one character other than a quote or a line "
                         f"break, or 'auto', got {delimiter!r}")
    if decimal not in (".", ",", "auto"):
        raise ValueError(f"the decimal mark must be '.', ',' or 'auto', got {decimal!r}")
    layout = _layout(path, header, delimiter, decimal)
    t = None if target is None else column_index(path, target, layout.names,
                                                  layout.n_cols)
    features = [j for j in range(layout.n_cols) if j != t]
    if not features:
        raise ValueError(f"{path}: no feature columns besides the target")
    X, y = _read_with_pandas(layout, features, t)
    if X is None:
        X, y = _read_with_csv(layout, features, t)
    else:
        layout.notes.append("read by pandas")
    if _has_index(layout, features, X):
        X, features = X[:, 1:], features[1:]
        layout.notes.append(f"column 1 (named {layout.names[0]!r}) holds distinct whole "
                            f"numbers, pandas' row index: left out of the features")
    names = [layout.names[j] for j in features] if layout.names else None
    return Table(X, y, names, layout.notes)


def is_auto(value) -> bool:
    """value is the string "auto" (never an `==` that an array or a number answers)."""
    return isinstance(value, str) and value == "auto"


def column_index(path: str, target, names: list[str] | None, n_cols: int) -> int:
    """The index of the target column of a table of n_cols columns (a CSV file's, or a
    .npy's): `target` is a header name, an index (negative counts from the end) or "auto"
    (the last column). ValueError naming the file for a name without a header or not among
    `names`, an index out of range, or any other kind of value."""
    if isinstance(target, str) and not is_auto(target):
        if names is None:
            raise ValueError(f"{path}: no header row, so the target column {target!r} cannot "
                             f"be found by name; give its index")
        if target not in names:
            raise ValueError(f"{path}: no column named {target!r}; the columns are "
                             f"{', '.join(names)}")
        return names.index(target)
    index = -1 if is_auto(target) else target
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise ValueError(f"target must be a column name or index, got {target!r}")
    if not -n_cols <= index < n_cols:
        raise ValueError(f"{path}: the target column index {index} is out of range for "
                         f"{n_cols} columns")
    return int(index) % n_cols


# ---------------------------------------------------------------------- the layout
def _layout(path: str, header, delimiter: str, decimal: str) -> Layout:
    text, whole = _sample(path)
    if not whole:
        text = text[:text.rfind("\n") + 1] or text  # whole lines only
    sniffed = delimiter == "auto"
    if sniffed:
        delimiter = _sniff_delimiter(path, text)
    notes = [f"delimiter {delimiter!r}{' (detected)' if sniffed else ''}"]
    rows = [(line, row) for line, row in _rows(io.StringIO(text), delimiter, path)
            if any(c.strip() for c in row)][:SAMPLE_ROWS]
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    if decimal == "auto":
        decimal = "," if delimiter != "," and any(
            _decimal_comma(c) for _, row in rows for c in row) else "."
        notes.append("decimal comma (detected)" if decimal == "," else "decimal point")
    else:
        notes.append(f"decimal mark {decimal!r}")
    first_line, first = rows[0]
    if is_auto(header):
        reason = _header_reason(rows, decimal)
        header = reason is not None
        notes.append(f"header on line {first_line}: {reason}" if header else "no header")
    else:
        notes.append(f"header on line {first_line} (as told)" if header else
                     "no header (as told)")
    names = [c.strip() for c in first] if header else None
    return Layout(path, delimiter, decimal, header, names, len(first), first_line, sniffed,
                  notes)


def _sample(path: str) -> tuple[str, bool]:
    """The first SAMPLE_CHARS characters of the file, and whether that is all of it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read(SAMPLE_CHARS)
            return text, not f.read(1)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _sniff_delimiter(path: str, text: str) -> str:
    sniffer = csv.Sniffer()
    sniffer.preferred = list(DELIMITERS)
    lines = text.splitlines()[:SAMPLE_ROWS]
    try:
        return sniffer.sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:  # no candidate occurs as often on every line
        present = [d for d in DELIMITERS if d in text]
        if len(present) <= 1:
            return present[0] if present else ","  # ragged rows, named later; one column
        raise ValueError(f"{path}: cannot tell the delimiter from the first lines (they "
                         f"hold {' and '.join(map(repr, present))} in varying numbers); pass "
                         f"it (--delimiter ';', delimiter=';')") from None


def _decimal_comma(cell: str) -> bool:
    return DECIMAL_COMMA.fullmatch(cell.strip()) is not None


def _header_reason(rows, decimal: str) -> str | None:
    """Why the first row is a header (rules (1)-(3) of the module docstring), or None."""
    first_line, first = rows[0]
    cells = [c.strip() for c in first]
    if cells == [str(j) for j in range(len(first))]:
        return (f"its cells are {', '.join(cells[:3])}, ..., the names pandas writes for "
                f"unnamed columns (pass --header no if it is data)")
    if len(first) > 1 and cells[0] == "" and _index_like([row[0] for _, row in rows[1:]]):
        return ("its first cell is empty over whole numbers: the name of pandas' row "
                "index")
    if len(rows) == 1:
        return "one row, all text" if all(_number(c, decimal) is None for c in first) \
            else None
    for j, cell in enumerate(first):
        kinds = {_number(row[j], decimal) is not None for _, row in rows[1:]
                 if j < len(row) and row[j].strip()}
        mine = _number(cell, decimal) is not None
        if len(kinds) == 1 and mine not in kinds and cell.strip():
            above, below = ("a number", "text") if mine else ("text", "numbers")
            return (f"column {j + 1} has {above} there ({cell.strip()!r}) and {below} on "
                    f"the lines below")
    return None


def _has_index(layout: Layout, features: list[int], X: np.ndarray) -> bool:
    """The first feature column is pandas' row index, left out of the features."""
    return (layout.header and features[0] == 0 and len(features) > 1
            and layout.names[0] in INDEX_NAMES and _index_like(X[:, 0]))


def _index_like(column) -> bool:
    """The cells (or numbers) are distinct whole numbers, as a row index is."""
    try:
        values = [int(v) if isinstance(v, str) else v for v in column]
    except ValueError:
        return False
    return bool(values) and all(v == int(v) for v in values) and \
        len(set(values)) == len(values)


# ---------------------------------------------------------------------- reading: pandas
def _read_with_pandas(layout: Layout, features: list[int], t: int | None):
    """(X, y) read by pandas, or (None, None) when pandas is missing or the file holds
    anything but finite numbers in the features and numbers or text in the target (the
    csv module then reads it and says where)."""
    if importlib.util.find_spec("pandas") is None:
        return None, None
    import pandas as pd

    options = {} if int(pd.__version__.split(".")[0]) >= 3 else \
        {"float_precision": "round_trip"}  # the same floats as float(); pandas 3's default
    try:
        frame = pd.read_csv(layout.path, sep=layout.delimiter, decimal=layout.decimal,
                            header=None, skiprows=layout.first_line if layout.header else
                            layout.first_line - 1, encoding="utf-8-sig", quotechar='"',
                            keep_default_na=False, low_memory=False, **options)
    except (ValueError, TypeError, OverflowError, UnicodeError, pd.errors.ParserError):
        return None, None
    if frame.shape[1] != layout.n_cols or len(frame) == 0:
        return None, None
    X = frame.iloc[:, features]
    if not all(X[c].dtype.kind in "iuf" for c in X.columns):
        return None, None
    X = X.to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        return None, None
    if t is None:
        return X, None
    column = frame.iloc[:, t]
    if column.dtype.kind == "i":
        return X, column.to_numpy(dtype=np.int64)
    if column.dtype.kind == "f":
        values = column.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            return None, None
        y = whole_targets(values)
        # a whole number beyond 2**53 may stand for an integer cell float64 cannot hold,
        # which the csv module's reading refuses
        if y.dtype.kind == "f" and np.any((np.abs(values) >= 2.0 ** 53)
                                          & (np.mod(values, 1) == 0)):
            return None, None
        return X, y
    cells = column.to_numpy(dtype=object)  # text: object or pandas 3's str dtype
    if all(isinstance(v, str) for v in cells):
        labels = np.array([v.strip() for v in cells])
        if (labels != "").all() and not all(_number(v, layout.decimal) is not None
                                            for v in labels):
            return X, labels
    return None, None


def whole_targets(y: np.ndarray) -> np.ndarray:
    """Float targets that are all whole numbers within int64 as int64 (exact); else `y`."""
    if y.dtype.kind != "f":
        return y
    with np.errstate(invalid="ignore"):
        whole = bool(np.all(np.mod(y, 1) == 0))
    # -2**63 and 2**63 are exact floats: every whole float in [-2**63, 2**63) casts exactly
    if whole and y.size and float(y.min()) >= INT64.min and float(y.max()) < 2.0 ** 63:
        return y.astype(np.int64)
    return y


# ---------------------------------------------------------------------- reading: csv
def _rows(f, delimiter: str, path: str):
    """(line number, cells) of every row of the open text file f."""
    reader = csv.reader(f, delimiter=delimiter)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise ValueError(f"{path}, line {reader.line_num}: not a readable CSV row "
                         f"({exc})") from exc


def _read_with_csv(layout: Layout, features: list[int], t: int | None):
    path = layout.path
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(line, row) for line, row in _rows(f, layout.delimiter, path)
                    if any(c.strip() for c in row)]
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    data = rows[1:] if layout.header else rows
    if not data:
        raise ValueError(f"{path}: no data rows")
    for line, row in data:
        if len(row) != layout.n_cols:
            hint = (f"; the delimiter {layout.delimiter!r} was detected from the first "
                    f"lines: pass another if it is wrong (--delimiter)") if layout.sniffed \
                else ""
            raise ValueError(f"{path}, line {line}: {len(row)} cells, but line "
                             f"{layout.first_line} has {layout.n_cols}{hint}")
    X = np.empty((len(data), len(features)))
    for i, (line, row) in enumerate(data):
        for k, j in enumerate(features):
            value = _number(row[j], layout.decimal)
            if value is None or not math.isfinite(value):
                hint = ""
                if t is None and value is None and row[j].strip():
                    hint = (f"; if column {j + 1} is the target, pass it to leave it out "
                            f"(--target {layout.names[j] if layout.names else j})")
                raise ValueError(f"{layout.where(line, j)}: {_why(row[j], layout)}{hint}")
            X[i, k] = value
    if t is None:
        return X, None
    cells = [row[t].strip() for _, row in data]
    for (line, _), cell in zip(data, cells):
        if not cell:
            raise ValueError(f"{layout.where(line, t)}: the target is empty")
    values = [_number(c, layout.decimal) for c in cells]
    if any(v is None for v in values):
        return X, np.array(cells)
    for (line, row), v in zip(data, values):
        if not math.isfinite(v):
            raise ValueError(f"{layout.where(line, t)}: {_why(row[t], layout)}")
    return X, _csv_targets(cells, values, [layout.where(line, t) for line, _ in data])


def _number(cell: str, decimal: str) -> float | None:
    """The number in a cell (float's syntax, the decimal mark `decimal`), or None."""
    text = cell.strip()
    if decimal == ",":
        if "." in text:
            return None
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def _why(cell: str, layout: Layout) -> str:
    """Why a feature cell (or a target cell that reads as NaN or Inf) is refused, and what
    to pass instead."""
    text = cell.strip()
    if not text:
        return "is empty"
    value = _number(cell, layout.decimal)
    if value is not None:  # NaN or +-Inf
        if text.lstrip("+-").lower() in ("nan", "inf", "infinity"):
            return f"{cell!r}: NaN and Inf are not allowed"
        return f"{cell!r} is beyond the float64 range (about 1.8e308)"
    no_grouping = "thousands separators are not read: write the numbers without them"
    if layout.decimal == "." and _decimal_comma(text):
        return (f"{cell!r} is not a number: if ',' is the decimal mark, pass it "
                f"(--decimal ,); {no_grouping}")
    if layout.decimal == "," and _number(text, ".") is not None:
        return (f"{cell!r} has a '.', but the decimal mark here is ',': if '.' is the "
                f"decimal mark, pass it (--decimal .); {no_grouping}")
    if GROUPED.fullmatch(text):
        return f"{cell!r} is not a number: {no_grouping}"
    return f"{cell!r} is not a number"


def _not_utf8(path: str) -> ValueError:
    """The first line of the file that is not UTF-8, named with the byte found there."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                byte = raw[exc.start:exc.start + 1]
                return ValueError(f"{path}, line {n}: byte 0x{byte.hex()} at character "
                                  f"{exc.start + 1} is not UTF-8 (a Windows or Latin-1 "
                                  f"export?); save the file as UTF-8 (\"CSV UTF-8\")")
    return ValueError(f"{path}: not a UTF-8 text file")


def _csv_targets(cells: list[str], values: list[float], where: list[str]) -> np.ndarray:
    """Numeric targets as the file holds them: int64 when every one is a whole number within
    int64 (an integer cell is read exactly, not through a float), else float64. An integer
    cell beyond int64 that float64 cannot hold exactly is refused: it would reach the model
    as another number (and two such labels could become one)."""
    ints = []
    for cell, v, at in zip(cells, values, where):
        if v != math.floor(v):
            ints = None
            continue
        try:
            exact = int(cell)  # an integer cell, read exactly
        except ValueError:
            exact = int(v)  # "3.0", "1e20": the float's own value
        if float(exact) != exact and not INT64.min <= exact <= INT64.max:
            raise ValueError(f"{at}: the target {cell} is a whole number beyond int64 that "
                             f"float64 cannot hold exactly (it would be read as "
                             f"{float(exact)!r}); store it as text to use it as a label, or "
                             f"scale it")
        if ints is not None:
            ints.append(exact)
    if ints is not None and all(INT64.min <= i <= INT64.max for i in ints):
        return np.array(ints, dtype=np.int64)
    return np.array(values, dtype=np.float64)
