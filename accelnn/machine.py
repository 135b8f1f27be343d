"""What machine this is: CPU, cores, BLAS and its kernel, GPU, library versions. Used by
`accelnn info` and recorded with every benchmark run."""

from __future__ import annotations

import os
import platform
import sys

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
