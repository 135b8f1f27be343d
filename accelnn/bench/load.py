"""Foreign load while timing: how much CPU other processes used during a timing block, from the
kernel's CPU counters (/proc/stat) and this process's own CPU time, and whether that makes the
block's timings untrustworthy (contaminated).

A block is contaminated when, beyond the counters' resolution, other processes used more than
FOREIGN_LIMIT of a CPU while fewer than IDLE_LIMIT CPUs stayed idle, and, where the kernel
reports CPU pressure (/proc/pressure/cpu, Linux 4.20+), runnable tasks waited for a CPU during
more than PRESSURE_LIMIT of the block: then other processes competed with this one for a CPU. A
busy process beside a single-threaded timing on 2 cores takes nothing from it (no task waits);
beside a multi-threaded BLAS it does: the BLAS waits for a descheduled worker thread at every
GEMM, which turned a 0.7 ms step into 2.4-66 ms in one measurement, often with a small spread,
so only the counters show it.

Where /proc/stat is missing (not Linux) the monitor is unavailable, and the measuring falls back
to the spread of repeated blocks alone.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

STAT_PATH = "/proc/stat"
PRESSURE_PATH = "/proc/pressure/cpu"
FOREIGN_LIMIT = 0.25  # CPUs that other processes may use during a block ...
IDLE_LIMIT = 1.0      # ... unless at least this many CPUs stayed idle all the same ...
PRESSURE_LIMIT = 0.1  # ... or tasks waited for a CPU during less than this share of the block
RESOLUTION_TICKS = 2  # allowance for the counters' rounding: 2 clock ticks (20 ms at USER_HZ 100)
BUSY = "machine busy"  # why a row stayed noisy when its blocks were contaminated
PERSISTENT_BLOCKS = 20  # this many contaminated blocks in a row: the load is not passing


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def read_proc_stat() -> str | None:
    """The text of /proc/stat, or None where there is none."""
    return _read(STAT_PATH)


def read_cpu_pressure() -> str | None:
    """The text of /proc/pressure/cpu, or None where the kernel has none."""
    return _read(PRESSURE_PATH)


def parse_cpu_pressure(text: str) -> float:
    """Seconds during which some runnable task waited for a CPU (the `some` line's total, in
    microseconds there)."""
    for line in text.splitlines():
        if line.startswith("some "):
            return int(line.rsplit("total=", 1)[1]) / 1e6
    raise ValueError(f"no 'some' line in {PRESSURE_PATH}: {text[:80]!r}")


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy ticks of all CPUs together, number of CPUs) from /proc/stat's text. Busy is every
    field of the aggregate `cpu` line but idle and iowait (user, nice, system, irq, softirq,
    steal; guest time is already inside user and nice)."""
    lines = text.splitlines() or [""]
    if not lines[0].startswith("cpu ") or len(lines[0].split()) < 6:
        raise ValueError(f"unexpected first line of /proc/stat: {lines[0]!r}")
    fields = [int(x) for x in lines[0].split()[1:9]]
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu") and line[3:4].isdigit())
    return sum(fields) - fields[3] - fields[4], max(cpus, 1)


class Reading(NamedTuple):
    """The clocks at one instant: wall (perf_counter), this process's CPU time, the busy
    CPU-seconds of the whole machine (None without /proc/stat) and the seconds tasks waited for
    a CPU (None without /proc/pressure/cpu)."""

    wall: float
    own: float
    busy: float | None
    waited: float | None


class Block(NamedTuple):
    """What happened during one timing block: its wall time, this process's CPU-seconds, other
    processes' CPU-seconds and the CPUs left idle (both None without /proc/stat), the seconds
    tasks waited for a CPU (None without /proc/pressure/cpu), and the verdict."""

    wall_s: float
    own_cpu_s: float
    foreign_cpu_s: float | None
    idle_cpus: float | None
    waited_s: float | None
    contaminated: bool


class LoadMonitor:
    """Reads the clocks around each timing block and judges the block (`block`); keeps the
    totals of the whole run (`summary`).

    read_stat returns /proc/stat's text or None, read_pressure /proc/pressure/cpu's or None
    (both injectable: tests pass a fake machine); ticks_per_s is the unit of /proc/stat's
    counters (USER_HZ); own_time is this process's CPU time."""

    def __init__(self, read_stat: Callable[[], str | None] = read_proc_stat,
                 ticks_per_s: float | None = None,
                 own_time: Callable[[], float] = time.process_time,
                 read_pressure: Callable[[], str | None] = read_cpu_pressure):
        self.read_stat, self.read_pressure, self.own_time = read_stat, read_pressure, own_time
        self.ticks_per_s = float(ticks_per_s or _clock_ticks())
        text = read_stat()
        self.available = text is not None
        self.pressure = self.available and read_pressure() is not None
        self.cpus = parse_proc_stat(text)[1] if text is not None else (os.cpu_count() or 1)
        self.blocks = self.contaminated = 0
        self.recent: deque[bool] = deque(maxlen=PERSISTENT_BLOCKS)
        self.started: Reading | None = None

    def read(self) -> Reading:
        text = self.read_stat() if self.available else None
        pressure = self.read_pressure() if self.pressure else None
        return Reading(time.perf_counter(), self.own_time(),
                       parse_proc_stat(text)[0] / self.ticks_per_s if text is not None else None,
                       parse_cpu_pressure(pressure) if pressure is not None else None)

    def judge(self, before: Reading, after: Reading) -> Block:
        """The block between two readings (not counted in the totals)."""
        wall, own = after.wall - before.wall, after.own - before.own
        if before.busy is None or after.busy is None or wall <= 0:
            return Block(wall, own, None, None, None, False)
        busy = after.busy - before.busy
        foreign = max(0.0, busy - own)
        idle = max(0.0, self.cpus - busy / wall)
        waited = None if before.waited is None or after.waited is None else \
            after.waited - before.waited
        slack = RESOLUTION_TICKS / self.ticks_per_s
        contaminated = (foreign - slack > FOREIGN_LIMIT * wall
                        and idle * wall - slack < IDLE_LIMIT * wall
                        and (waited is None or waited > PRESSURE_LIMIT * wall))
        return Block(wall, own, foreign, idle, waited, contaminated)

    def block(self, before: Reading, after: Reading) -> Block:
        """Judge a timing block and add it to the run's totals."""
        b = self.judge(before, after)
        self.blocks += 1
        self.contaminated += b.contaminated
        self.recent.append(b.contaminated)
        return b

    def persistent(self) -> bool:
        """Whether the last PERSISTENT_BLOCKS blocks (about 4 s of timing at the default
        settings) were all contaminated: then measuring a row again is unlikely to find the
        machine quiet, and the measuring stops re-measuring until a clean block is seen."""
        return len(self.recent) == PERSISTENT_BLOCKS and all(self.recent)

    def start(self) -> None:
        """Mark the start of the run, for `summary`."""
        self.started = self.read()

    def summary(self) -> dict:
        """The run so far: its wall time, the CPU-seconds other processes used in it and their
        share of the machine (foreign CPU-seconds over wall time x CPUs), and the timing blocks
        judged and found contaminated. The foreign figures are None without /proc/stat."""
        now = self.read()
        start = self.started or now
        wall = now.wall - start.wall
        whole = self.judge(start, now)
        return {"source": STAT_PATH if self.available else None,
                "pressure": PRESSURE_PATH if self.pressure else None, "cpus": self.cpus,
                "wall_s": wall, "foreign_cpu_s": whole.foreign_cpu_s,
                "foreign_share": (whole.foreign_cpu_s / (wall * self.cpus)
                                  if whole.foreign_cpu_s is not None and wall > 0 else None),
                "blocks": self.blocks, "contaminated_blocks": self.contaminated,
                "limits": {"foreign_cpus": FOREIGN_LIMIT, "idle_cpus": IDLE_LIMIT,
                           "pressure_share": PRESSURE_LIMIT}}


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100
