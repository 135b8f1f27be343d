"""The CuPy backend: NVIDIA GPUs through CuPy, with the data on the device for the whole fit.

GEMMs are cuBLAS, called directly on a handle of the backend's own (accelnn.backends.cupy_blas;
the transposed operands of backward are views, not copies); the elementwise and reduction work
around them is one fused kernel per primitive, and an optimizer update is one kernel for all
the parameters together (accelnn.backends.cupy_kernels). Nothing in a training step waits for
the device: the loss comes back as a 0-d device array. Dtypes other than float32/float64, and
activations or heads the kernels don't know, take the base class's generic path on CuPy arrays.

CUDA graphs: a training step's forward and backward pass (`replayed`) are recorded as a CUDA
graph the second time they run on the same arrays, and replayed from then on: one launch instead
of one per kernel, which is most of the time of a small network's step. The update runs after
it as one kernel launch, with the step's learning rate.

Settings, read when the backend is created (and checked by `probe`, so a bad value shows up
as the reason cupy cannot run):

    ACCELNN_DEVICE       GPU ordinal to run on (default 0). The backend makes it the current
                         device of the thread that creates the backend; CuPy's current device
                         is per thread, so use the backend from that thread.
    ACCELNN_ALLOW_TF32   1 lets float32 GEMMs use TF32 tensor cores (compute capability >= 8.0:
                         several times faster on large layers, but only ~1e-3 relative
                         precision, outside DESIGN.md's float32 agreement limit). Default 0:
                         full float32 GEMMs.
    ACCELNN_CUDA_GRAPHS  0 runs every step kernel by kernel; default 1: CUDA graphs as above.

`CupyBackend(device=..., allow_tf32=..., graphs=...)` overrides them for an instance passed as
`backend=`.
"""

from __future__ import annotations

import importlib
import os
import warnings

import cupy
import numpy as np

from accelnn._data import host_array
from accelnn.activations import ACTIVATIONS
from accelnn.backends import cupy_kernels as K
from accelnn.backends.base import Backend
from accelnn.losses import HEADS
from accelnn.optimizers import RULES

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
DLPACK_ON_GPU = (2, 13)  # kDLCUDA, kDLCUDAManaged
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
SWITCHES = ("ACCELNN_ALLOW_TF32", "ACCELNN_CUDA_GRAPHS")

# What this backend leaves to the generic path on purpose, by kind of fused work (see
# `CupyBackend.fused_kernels`), each with the reason; tests/test_kernel_coverage.py fails on
# any activation, head or optimizer rule that has neither a kernel here nor an entry.
_PREDICTION = ("h(Z) for prediction only, outside every training step and its CUDA graph: a "
               "few CuPy kernels over the (m, n_out) output layer, small next to the forward "
               "GEMMs (not measured against a fused kernel)")
DELIBERATELY_GENERIC: dict[str, dict[str, str]] = {
    "activation gradient": {"identity": "g' = 1: nothing to do, and the generic path does "
                                        "nothing"},
    "head output": {"sigmoid": _PREDICTION, "softmax": _PREDICTION,
                    "identity": "h(Z) = Z: nothing to do, and the generic path does nothing"},
}


def device_ordinal(value, count: int, source: str = "ACCELNN_DEVICE") -> int:
    """The GPU ordinal `value` names (None or "" mean 0), checked against `count` devices.
    Raises ValueError naming `source` for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        value = 0
    try:
        if isinstance(value, bool):
            raise ValueError
        ordinal = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a GPU ordinal, an integer from 0 to {count - 1}; "
                         f"got {value!r}") from None
    if not 0 <= ordinal < count:
        raise ValueError(f"{source}={value!r} names no CUDA device: this machine has {count} "
                         f"(ordinals 0 to {count - 1})")
    return ordinal


def flag_setting(value, source: str, default: bool = False) -> bool:
    """The on/off setting `value` (None or "" for the default, a bool, or a string such as
    "1"/"0") of the variable or argument `source`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key in TRUE or key in FALSE:
        return key in TRUE
    raise ValueError(f"{source} must be 1 or 0 (also true/false, yes/no, on/off), got {value!r}")


def _version(v: int) -> str:
    """A CUDA version number (12090) as text ("12.9")."""
    return f"{v // 1000}.{v % 1000 // 10}"


def _driver_note() -> str:
    """What the driver says about itself, to follow a failed device query."""
    runtime = cupy.cuda.runtime
    try:
        driver = runtime.driverGetVersion()
        if driver == 0:
            return " (no NVIDIA driver is loaded)"
        return (f" (the driver supports CUDA {_version(driver)}, cupy {cupy.__version__} uses "
                f"CUDA {_version(runtime.runtimeGetVersion())})")
    except Exception:  # the note is optional; the error it follows is the message
        return ""


class CupyBackend(Backend):
    name = "cupy"
    xp = cupy

    @classmethod
    def probe(cls) -> str | None:
        """None when a CUDA device works here: the runtime sees one, ACCELNN_DEVICE and
        ACCELNN_ALLOW_TF32 are valid, and an allocation, a compiled kernel and a copy back
        succeed on it. Else the reason (`import cupy` succeeds on machines with no GPU)."""
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError, or a CUDA library that fails to load
            return f"installed, but no CUDA device: {exc}{_driver_note()}"
        if count == 0:
            return "installed, but no CUDA device: the CUDA runtime sees 0 devices"
        try:
            ordinal = device_ordinal(os.environ.get("ACCELNN_DEVICE"), count)
            for var in SWITCHES:
                flag_setting(os.environ.get(var), var)
        except ValueError as exc:
            return str(exc)
        try:
            with cupy.cuda.Device(ordinal):
                if int((cupy.arange(4) + 1).sum()) != 10:
                    return f"installed, but CUDA device {ordinal} computes wrong results"
        except Exception as exc:
            return (f"installed, but CUDA device {ordinal} does not work: "
                    f"{type(exc).__name__}: {exc}")
        return None

    def __init__(self, device: int | None = None, allow_tf32: bool | None = None,
                 graphs: bool | None = None):
        count = cupy.cuda.runtime.getDeviceCount()
        if device is None:
            self.ordinal = device_ordinal(os.environ.get("ACCELNN_DEVICE"), count)
        else:
            self.ordinal = device_ordinal(device, count, "device")
        if allow_tf32 is None:
            allow_tf32 = flag_setting(os.environ.get("ACCELNN_ALLOW_TF32"), "ACCELNN_ALLOW_TF32")
        if graphs is None:
            graphs = flag_setting(os.environ.get("ACCELNN_CUDA_GRAPHS"), "ACCELNN_CUDA_GRAPHS",
                                  default=True)
        self._device = cupy.cuda.Device(self.ordinal)
        self._device.use()
        self.device = f"cuda:{self.ordinal}"
        self._linalg = importlib.import_module("cupy._core._routines_linalg")
        self.tf32 = bool(allow_tf32) and int(self._device.compute_capability) >= 80
        self._tf32_asked = bool(allow_tf32)
        self._gemm32 = (self._linalg.COMPUTE_TYPE_TF32 if self.tf32
                        else self._linalg.COMPUTE_TYPE_DEFAULT)
        self._rows: dict = {}  # per-row loss scratch of the softmax head, by (m, dtype)
        from accelnn.backends.cupy_blas import Cublas  # needs CuPy's CUDA libraries loaded

        self._blas, no_blas = Cublas.load()
        self.graphs = bool(graphs) and self._blas is not None
        self._graphs_note = ("on" if self.graphs else "off (turned off)" if not graphs
                             else f"off (cuBLAS cannot be called directly: {no_blas})")
        self._tables: dict = {}  # device pointer tables of the multi-tensor updates
        self.kernels = self.fused_kernels()

    @classmethod
    def fused_kernels(cls) -> dict[str, dict]:
        """The kernels' tables, by kind (see Backend.fused_kernels): the formulas and update
        bodies of cupy_kernels, from which its kernels are built on first use."""
        return {"activation": K.FORWARD, "activation gradient": K.GRAD, "head": K.LOSS,
                "head output": {}, "optimizer": K.UPDATES}

    # ----------------------------------------------------------------- data movement
    def asarray(self, x, dtype=None):
        """A C-contiguous CuPy array on this backend's device: CuPy arrays, arrays of other
        CUDA libraries (__cuda_array_interface__, or DLPack on a CUDA device) without a copy
        when dtype and layout allow; host data (NumPy, lists, host DLPack) copied over."""
        if not isinstance(x, cupy.ndarray):
            if hasattr(x, "__cuda_array_interface__"):
                x = cupy.asarray(x)
            elif hasattr(x, "__dlpack_device__") and x.__dlpack_device__()[0] in DLPACK_ON_GPU:
                x = cupy.from_dlpack(x)
            else:
                host = host_array(x, "the input")
                if host.dtype.kind not in "biufc":
                    raise TypeError(f"an array of dtype {host.dtype} cannot go to the GPU: it "
                                    "must hold numbers (bool, int or float)")
                x = cupy.asarray(host, dtype=dtype)
        return cupy.ascontiguousarray(x, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        return cupy.asnumpy(a)

    def synchronize(self) -> None:
        self._device.synchronize()

    def info(self) -> dict:
        runtime = cupy.cuda.runtime
        props = runtime.getDeviceProperties(self.ordinal)
        with self._device:
            free, total = runtime.memGetInfo()
        tf32 = "on" if self.tf32 else "off"
        if self._tf32_asked and not self.tf32:
            tf32 += " (asked for, but TF32 needs compute capability 8.0)"
        name = props["name"]
        return {"device": self.device,
                "gpu": name.decode() if isinstance(name, bytes) else str(name),
                "compute_capability": f"{props['major']}.{props['minor']}",
                "memory": f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)",
                "cuda_runtime": _version(runtime.runtimeGetVersion()),
                "cuda_driver": _version(runtime.driverGetVersion()),
                "xp": f"cupy {cupy.__version__}", "tf32": tf32, "cuda_graphs": self._graphs_note}

    @staticmethod
    def _fused(*arrays) -> bool:
        """Whether the kernels take these arrays: one dtype, float32 or float64, C-contiguous."""
        dt = arrays[0].dtype
        return dt in FLOATS and all(a.dtype == dt and a.flags.c_contiguous for a in arrays)

    # ----------------------------------------------------------------- primitives
    def matmul(self, a, b, out):
        if self._blas is not None and self._blas.gemm(a, b, out, self.tf32):
            return out
        if out.dtype == FLOATS[0] and self._linalg.get_compute_type(out.dtype) != self._gemm32:
            self._linalg.set_compute_type(out.dtype, self._gemm32)
        return cupy.matmul(a, b, out=out)

    def bias_act(self, Z, b, act):
        if (act.name not in self.kernels["activation"] or ACTIVATIONS.get(act.name) is not act
                or not self._fused(Z, b)):
            return super().bias_act(Z, b, act)
        K.bias_act(act.name)(b, Z)
        return Z

    def act_grad(self, dA, A, act):
        if (act.name not in self.kernels["activation gradient"]
                or ACTIVATIONS.get(act.name) is not act or not self._fused(dA, A)):
            return super().act_grad(dA, A, act)
        K.act_grad(act.name)(A, dA)
        return dA

    def bias_grad(self, dZ, out):
        if not self._fused(dZ, out):
            return super().bias_grad(dZ, out)
        m, n = dZ.shape
        K.raw("column_sum", dZ.dtype)(((n + 31) // 32,), (32, 32),
                                      (dZ, out, np.int32(m), np.int32(n)))
        return out

    def loss_delta(self, Z, Y, head, out, weights=None):
        if (head.name not in self.kernels["head"] or HEADS.get(head.name) is not head
                or weights is not None or not self._fused(Z, Y, out)):
            return super().loss_delta(Z, Y, head, out, weights)  # weighted: the generic path
        (m, n), t = Z.shape, Z.dtype.type
        if out is not Z:
            out[...] = Z
        divisor = t(K.LOSS[head.name][2] * m)
        if head.name == "softmax":
            rows = self._row_scratch(m, Z.dtype)
            per_block = K.SOFTMAX_ROWS_PER_BLOCK
            K.raw("softmax_delta", Z.dtype)(
                ((m + per_block - 1) // per_block,), (32, per_block),
                (Y, out, rows, np.int32(m), np.int32(n), t(1.0 / m)))
            return K.loss_sum("softmax")(rows, divisor)
        loss = K.loss_sum(head.name)(out, Y, divisor)
        K.output_delta(head.name)(Y, t(1.0 / m), out)
        return loss

    def _row_scratch(self, m: int, dtype):
        key = (m, dtype)
        if key not in self._rows:
            if len(self._rows) >= 8:
                self._rows.clear()
            self._rows[key] = cupy.empty(m, dtype)
        return self._rows[key]

    def add_scaled(self, y, x, c: float):
        if not self._fused(y, x):
            return super().add_scaled(y, x, c)
        K.axpy()(x, y.dtype.type(c), y)
        return y

    def sq_norm(self, x):
        if not self._fused(x):
            return super().sq_norm(x)
        return K.sq_sum()(x)

    # ----------------------------------------------------------------- optimizer update
    def update(self, rule, params, grads, states, scalars):
        """One launch of the rule's multi-tensor kernel (cupy_kernels.UPDATES) for all the
        parameters, the scalars cast to their dtype and passed by value from the host; the
        generic path for rules without a kernel (a Rule of its own under a built-in name
        included) and for arrays the kernels don't take. The table of device pointers is made
        once per set of arrays (one copy to the device) and then reused."""
        arrays = [params, grads, *states]
        if (not params or RULES.get(rule.name) is not rule
                or rule.name not in self.kernels["optimizer"]
                or not self._fused(*(a for group in arrays for a in group))):
            return super().update(rule, params, grads, states, scalars)
        key = tuple(a.data.ptr for group in arrays for a in group) + \
            tuple(p.size for p in params)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) >= 32:
                self._tables.clear()
            off = np.concatenate([[0], np.cumsum([p.size for p in params])]).astype(np.int64)
            ptr = np.array([a.data.ptr for group in arrays for a in group], np.uint64)
            table = self._tables[key] = (cupy.asarray(ptr), cupy.asarray(off), int(off[-1]))
        ptr, off, total = table
        if total:
            t = params[0].dtype.type
            blocks = min(-(-total // K.UPDATE_THREADS), K.UPDATE_MAX_BLOCKS)
            K.update(rule.name, params[0].dtype)((blocks,), (K.UPDATE_THREADS,), (
                ptr, off, np.int32(len(params)), np.int64(total), *map(t, scalars)))

    # ----------------------------------------------------------------- CUDA graphs
    def replayed(self, fn):
        return _Replayed(fn) if self.graphs else fn


class _Replayed:
    """fn(*arrays) -> array, recorded as a CUDA graph the second time it runs on the same
    arrays (same addresses, shapes, strides and dtypes; the first run is the warm-up that
    compiles kernels and allocates buffers) and replayed on the current stream from then on.

    A replay returns the array that the recording returned, overwritten by every replay.
    Everything else fn reads or writes must keep its device address while this object lives:
    the model's parameters, gradients and workspaces do, and the recording keeps every buffer it
    allocated. If an operation of fn cannot be recorded, fn runs kernel by kernel from then on,
    after a RuntimeWarning that says why."""

    LIMIT = 8  # recorded graphs kept, oldest dropped first (one per batch shape in practice)

    def __init__(self, fn):
        self.fn = fn
        self.graphs: dict = {}  # key -> None (seen once) or (graph, result, kept buffers)
        self.eager = False

    def __call__(self, *arrays):
        if self.eager:
            return self.fn(*arrays)
        key = tuple((a.data.ptr, a.shape, a.strides, a.dtype.char) for a in arrays)
        if key not in self.graphs:
            if len(self.graphs) >= self.LIMIT:
                del self.graphs[next(iter(self.graphs))]
            self.graphs[key] = None
            return self.fn(*arrays)
        entry = self.graphs[key]
        if entry is None:
            entry = self.graphs[key] = self._record(arrays)
            if entry is None:
                return self.fn(*arrays)
        graph, result, _ = entry
        graph.launch()
        return result

    def _record(self, arrays):
        pool, kept = cupy.get_default_memory_pool(), []

        def malloc(size):
            mem = pool.malloc(size)
            kept.append(mem)  # never returned to the pool while the graph may write it
            return mem

        stream = cupy.cuda.Stream(non_blocking=True)
        try:
            with stream, cupy.cuda.using_allocator(malloc):
                stream.begin_capture()
                try:
                    result = self.fn(*arrays)
                finally:
                    graph = stream.end_capture()
        except Exception as exc:  # CUDA, cuBLAS or CuPy refusing an operation under capture
            self.eager = True
            warnings.warn(f"accelnn: a CUDA graph of the training step could not be recorded "
                          f"({type(exc).__name__}: {exc}); running it kernel by kernel",
                          RuntimeWarning, stacklevel=3)
            return None
        return graph, result, kept
