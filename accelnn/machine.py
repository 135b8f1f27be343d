"""What machine this is: CPU, cores, BLAS and its kernel, GPU, library versions, used by
`accelnn info` and recorded with every benchmark run; and the BLAS thread policy of the CPU
backends (`BLAS_THREADS`)."""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from accelnn._version import __version__


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> list[dict]:
    """The BLAS libraries loaded in this process with their kernel (OpenBLAS' `architecture`)
    and thread count, from threadpoolctl; one entry saying why not when it is missing."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl is not installed (pip install accelnn[bench])"}]
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer",
            "filepath")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info()
            if lib.get("user_api") == "blas"]


def blas_summary() -> str:
    """One line naming each BLAS in use, its kernel and threads: "openblas 0.3.31 (kernel
    Haswell, 2 threads)", or why that is unknown."""
    parts = []
    for lib in blas_info():
        if "error" in lib:
            return f"unknown, {lib['error']}"
        parts.append(f"{lib['internal_api']} {lib['version']} (kernel {lib['architecture']}, "
                     f"{lib['num_threads']} threads)")
    return "; ".join(parts) or "none found"


# Environment variables through which a user sets the BLAS threads; any of them set wins over
# the policy.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")


def cpu_ticks() -> tuple[int, int] | None:
    """(busy clock ticks of the whole machine, ticks of this process) so far, from /proc; None
    where there is no /proc."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return sum(fields) - fields[3] - fields[4], int(own[11]) + int(own[12])


class BlasThreads:
    """How many threads a BLAS GEMM gets: one up to `serial_max_macs` multiply-adds, above it
    every core that other processes leave free. Measured (README, "CPU speed"): a second
    OpenBLAS thread gains nothing on small GEMMs and costs on the elementwise pass that follows,
    which then reads half of its operand from the other core's cache; only large GEMMs gain, and
    only on free cores: OpenBLAS' threads wait for each other spinning, so a GEMM of 25.7 M
    multiply-adds with two threads took 44 ms instead of 1.1 ms with one while other processes
    held the cores. So a core counts as taken when other processes used at least 3/4 of one
    over the last sample (from /proc/stat, sampled at most every `sample_s` seconds).

    A user's own setting wins: with one of THREAD_VARIABLES in the environment, `use` changes
    nothing. Threads are set through threadpoolctl on every BLAS loaded at the first `use`
    (NumPy's and, for compiled code, SciPy's), and only when the count changes; without
    threadpoolctl the policy is off."""

    serial_max_macs = 4_000_000
    sample_s = 0.1

    def __init__(self):
        self._libs: list | None = None
        self._initial: dict[str, int] = {}  # each library's own count, by its file
        self._current = 0
        self.cores = os.cpu_count() or 1
        self._free = self.cores
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._sampled: tuple[float, tuple[int, int] | None] = (time.monotonic(), cpu_ticks())

    def user_setting(self) -> str | None:
        """'NAME=value' of the variable that sets the threads, or None."""
        for name in THREAD_VARIABLES:
            if os.environ.get(name):
                return f"{name}={os.environ[name]}"
        return None

    def for_gemm(self, macs: int) -> int:
        """The threads for a GEMM of `macs` multiply-adds."""
        return 1 if macs <= self.serial_max_macs else self.free_cores()

    def free_cores(self) -> int:
        """The cores that other processes left free over the last sample (at least 1)."""
        now = time.monotonic()
        then, ticks = self._sampled
        if now - then >= self.sample_s:
            new = cpu_ticks()
            if ticks is not None and new is not None:
                others = (new[0] - ticks[0] - (new[1] - ticks[1])) / self._hz / (now - then)
                self._free = max(1, min(self.cores, self.cores - int(others + 0.25)))
            self._sampled = (now, new)
        return self._free

    def use(self, n: int) -> None:
        """Run the BLAS on n threads from now on (nothing when the user set them). This is the
        process's setting: NumPy code of the caller's own runs on it too until the next change
        (`restore` puts the libraries' own counts back)."""
        if n == self._current:
            return
        if self._libs is None:
            self._libs = self._controllers()
            for lib in self._libs:
                self._initial.setdefault(lib.filepath, lib.num_threads)
        self._current = n
        for lib in self._libs:
            lib.set_num_threads(n)

    def restore(self) -> None:
        """Give every BLAS the thread count it had before the policy first changed it."""
        for lib in self._libs or []:
            lib.set_num_threads(self._initial[lib.filepath])
        self._current = 0

    def refresh(self) -> None:
        """Look for the loaded BLAS libraries again at the next `use`: call it after loading
        one (the numba backend loads SciPy's, which its compiled code calls)."""
        self._libs, self._current = None, 0

    def _controllers(self) -> list:
        if self.user_setting() is not None:
            return []
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return []
        return list(ThreadpoolController().select(user_api="blas").lib_controllers)

    def describe(self) -> str:
        """The policy in one line, for `accelnn info`."""
        user = self.user_setting()
        if user is not None:
            return f"as the user set them ({user})"
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
            return "BLAS defaults (threadpoolctl is not installed: pip install threadpoolctl)"
        return (f"1 BLAS thread for GEMMs up to {self.serial_max_macs:,} multiply-adds, above "
                f"it up to {self.cores}: the cores other processes leave free "
                f"(OPENBLAS_NUM_THREADS or OMP_NUM_THREADS overrides)")


BLAS_THREADS = BlasThreads()


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            from importlib.metadata import PackageNotFoundError, version
            try:
                return version(module if module != "cupy" else "cupy")
            except PackageNotFoundError:
                return None
        except ImportError:  # pragma: no cover
            return None
    return getattr(mod, "__version__", None)


def machine_info() -> dict:
    """A JSON-ready description of this machine and the software accelnn runs on."""
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                      "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                      "ACCELNN_BACKEND", "ACCELNN_DTYPE") if k in os.environ}
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "accelnn": __version__,
        "numpy": np.__version__,
        "numba": _version("numba"),
        "cupy": _version("cupy"),
        "blas": blas_info(),
        "env": env,
    }
