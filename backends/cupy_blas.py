"""cuBLAS GEMMs for the cupy backend, called directly (ctypes) on a handle of our own.

Why not `cupy.matmul`: CuPy refuses any cuBLAS call while a stream is being captured into a
CUDA graph ("calling cuBLAS API during stream capture is currently unsupported", raised by its
`cublas.setStream`), so a training step that goes through it cannot be recorded. cuBLAS itself
can be captured when its workspace is set by the caller (cuBLAS documentation, "CUDA Graphs
Support"), so this module creates its own handle, gives it a fixed workspace and calls
`cublasGemmEx` through ctypes: a call costs a few microseconds of Python instead of CuPy's
general matmul dispatch, and TF32 is chosen per call by the compute type, not process-wide.

The library is the one CuPy already loaded (`libcublas.so.<CUDA major>`, found by its soname);
where it cannot be found (not Linux, a renamed library), `Cublas.load` returns the reason and
the backend keeps `cupy.matmul` and runs without CUDA graphs.
"""

from __future__ import annotations

import ctypes
import sys

import cupy
from cupy_backends.cuda.libs import cublas as _cb

WORKSPACE_BYTES = 32 * 2**20  # what cuBLAS recommends for Hopper; enough for earlier GPUs


def _library():
    """The cuBLAS shared library CuPy uses, as a ctypes CDLL."""
    if not sys.platform.startswith("linux"):
        raise OSError(f"direct cuBLAS calls are implemented for Linux only, not {sys.platform}")
    cupy.cuda.device.get_cublas_handle()  # makes CuPy load its cuBLAS first
    major = cupy.cuda.runtime.runtimeGetVersion() // 1000
    return ctypes.CDLL(f"libcublas.so.{major}")


class Cublas:
    """A cuBLAS handle on the current device, with its own workspace."""

    @classmethod
    def load(cls) -> tuple[Cublas | None, str | None]:
        """(Cublas, None), or (None, the reason direct cuBLAS calls are unavailable)."""
        try:
            return cls(), None
        except (OSError, AttributeError, RuntimeError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def __init__(self):
        lib = _library()
        self._create, self._stream = lib.cublasCreate_v2, lib.cublasSetStream_v2
        self._workspace_fn, self._gemm = lib.cublasSetWorkspace_v2, lib.cublasGemmEx
        self._destroy = lib.cublasDestroy_v2
        handle = ctypes.c_void_p()
        self._check(self._create(ctypes.byref(handle)), "cublasCreate")
        self.handle = handle
        self._workspace = cupy.empty(WORKSPACE_BYTES, cupy.uint8)  # lives as long as the handle
        self._check(self._workspace_fn(handle, ctypes.c_void_p(self._workspace.data.ptr),
                                       ctypes.c_size_t(WORKSPACE_BYTES)), "cublasSetWorkspace")
        self._types = {  # dtype -> (data type, compute type, TF32 compute type, 1, 0)
            "float32": (cupy.cuda.runtime.CUDA_R_32F, _cb.CUBLAS_COMPUTE_32F,
                        _cb.CUBLAS_COMPUTE_32F_FAST_TF32, ctypes.c_float(1), ctypes.c_float(0)),
            "float64": (cupy.cuda.runtime.CUDA_R_64F, _cb.CUBLAS_COMPUTE_64F,
                        _cb.CUBLAS_COMPUTE_64F, ctypes.c_double(1), ctypes.c_double(0))}

    def __del__(self):
        handle = getattr(self, "handle", None)
        if handle is not None and handle.value:
            self._destroy(handle)

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    @staticmethod
    def _operand(x):
        """(pointer, leading dimension, op) of a row-major matrix x as a column-major operand
        meaning x.T, or None when x is neither C- nor F-contiguous."""
        rows, cols = x.shape
        if x.flags.c_contiguous:
            return x.data.ptr, max(cols, 1), _cb.CUBLAS_OP_N
        if x.flags.f_contiguous:  # x is the transpose of a C-contiguous (cols, rows) array
            return x.data.ptr, max(rows, 1), _cb.CUBLAS_OP_T
        return None

    def gemm(self, a, b, out, tf32: bool) -> bool:
        """out <- a @ b for 2-D float32/float64 arrays of one dtype, out C-contiguous, on the
        current stream. Returns False, doing nothing, for layouts it does not take."""
        types = self._types.get(out.dtype.name)
        if types is None or a.ndim != 2 or b.ndim != 2 or not out.flags.c_contiguous \
                or a.dtype != out.dtype or b.dtype != out.dtype:
            return False
        opa, opb = self._operand(a), self._operand(b)
        if opa is None or opb is None:
            return False
        (m, k), n = a.shape, b.shape[1]
        if out.size == 0:
            return True
        if k == 0:  # an empty sum
            out.fill(0)
            return True
        data, compute, fast, one, zero = types
        self._check(self._stream(self.handle, ctypes.c_void_p(
            cupy.cuda.get_current_stream().ptr)), "cublasSetStream")
        # Row-major out = a @ b is column-major out.T = b.T @ a.T: b goes first.
        self._check(self._gemm(
            self.handle, opb[2], opa[2], n, m, k, ctypes.byref(one),
            ctypes.c_void_p(opb[0]), data, opb[1], ctypes.c_void_p(opa[0]), data, opa[1],
            ctypes.byref(zero), ctypes.c_void_p(out.data.ptr), data, max(n, 1),
            fast if tf32 else compute, _cb.CUBLAS_GEMM_DEFAULT), "cublasGemmEx")
        return True
