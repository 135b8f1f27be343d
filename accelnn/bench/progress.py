"""Progress of a benchmark run on stderr, one step per finished row: a tqdm bar on a terminal when
tqdm is installed, else one plain line per row, flushed at once (a piped or logged run shows its
progress as it goes, not minutes later)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

from .text import check_text, fmt_count, fmt_time, layers_text


def row_line(r: dict) -> str:
    """One finished row: "mnist [784, 256, 10] b128 train_step float32 numba: 525 us/call,
    244k samples/s, ok"."""
    speed = (f"{fmt_time(r['median_s'])}/call, {fmt_count(r['samples_per_s'])} samples/s"
             if r["median_s"] is not None else "not timed")
    peer = " (peer)" if r["peer"] else ""
    return (f"{r['config']} {layers_text(r['layers'])} b{r['batch']} {r['phase']} {r['dtype']} "
            f"{r['backend']}{peer}: {speed}, {check_text(r)}")


def terminal_width(stream) -> int:
    """The columns of the terminal `stream` writes to; 0 when it is none or does not say (a
    pseudo-terminal of size 0 x 0, on which a tqdm bar prints nothing at all)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


class Progress:
    """Reports each finished row (`row`) on `stream` (stderr by default). total=0 is silent.
    bar=None picks the tqdm bar when the stream is a terminal with a width and tqdm is
    installed."""

    def __init__(self, total: int, stream=None, bar: bool | None = None):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.stream = sys.stderr if stream is None else stream
        if bar is None:
            bar = (self.stream.isatty() and terminal_width(self.stream) > 0
                   and importlib.util.find_spec("tqdm") is not None)
        self.bar = None
        if total > 0 and bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, unit="row", dynamic_ncols=True,
                            desc="accelnn bench")

    def row(self, r: dict) -> None:
        """One more row finished."""
        if not self.total:
            return
        self.done += 1
        line = row_line(r)
        if self.bar is not None:
            self.bar.set_postfix_str(line, refresh=False)
            self.bar.update()
        else:
            elapsed = time.perf_counter() - self.start
            self.stream.write(f"[{self.done}/{self.total} {elapsed:5.1f}s] {line}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
