"""The CuPy backend: NVIDIA GPUs through CuPy, with the data on the device for the whole fit.

GEMMs are cuBLAS through `cupy.matmul(..., out=)` (the transposed operands of backward are
views, not copies); the elementwise and reduction work around them is one fused kernel per
primitive (accelnn.backends.cupy_kernels); the optimizer updates are one kernel per parameter.
Nothing in a training step waits for the device: the loss comes back as a 0-d device array.
Dtypes other than float32/float64, and activations or heads the kernels don't know, take the
base class's generic path on CuPy arrays.

Settings, read when the backend is created (and checked by `probe`, so a bad value shows up
as the reason cupy cannot run):

    ACCELNN_DEVICE       GPU ordinal to run on (default 0). The backend makes it the current
                         device of the thread that creates the backend; CuPy's current device
                         is per thread, so use the backend from that thread.
    ACCELNN_ALLOW_TF32   1 lets float32 GEMMs use TF32 tensor cores (compute capability >= 8.0:
                         several times faster on large layers, but only ~1e-3 relative
                         precision, outside DESIGN.md's float32 agreement limit). Default 0:
                         full float32 GEMMs. Implemented by setting CuPy's float32 compute type
                         (the setting behind CUPY_TF32, process-wide in CuPy) before each GEMM.

`CupyBackend(device=..., allow_tf32=...)` overrides both for an instance passed as `backend=`.
"""

from __future__ import annotations

import importlib
import os

import cupy
import numpy as np

from accelnn._data import host_array
from accelnn.activations import ACTIVATIONS
from accelnn.backends import cupy_kernels as K
from accelnn.backends.base import Backend
from accelnn.losses import HEADS

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
DLPACK_ON_GPU = (2, 13)  # kDLCUDA, kDLCUDAManaged
TRUE, FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


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


def tf32_setting(value, source: str = "ACCELNN_ALLOW_TF32") -> bool:
    """Whether `value` (None, a bool or a string such as "1"/"0") allows TF32 GEMMs."""
    if value is None or isinstance(value, bool):
        return bool(value)
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
            tf32_setting(os.environ.get("ACCELNN_ALLOW_TF32"))
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

    def __init__(self, device: int | None = None, allow_tf32: bool | None = None):
        count = cupy.cuda.runtime.getDeviceCount()
        if device is None:
            self.ordinal = device_ordinal(os.environ.get("ACCELNN_DEVICE"), count)
        else:
            self.ordinal = device_ordinal(device, count, "device")
        if allow_tf32 is None:
            allow_tf32 = tf32_setting(os.environ.get("ACCELNN_ALLOW_TF32"))
        self._device = cupy.cuda.Device(self.ordinal)
        self._device.use()
        self.device = f"cuda:{self.ordinal}"
        self._linalg = importlib.import_module("cupy._core._routines_linalg")
        self.tf32 = bool(allow_tf32) and int(self._device.compute_capability) >= 80
        self._tf32_asked = bool(allow_tf32)
        self._gemm32 = (self._linalg.COMPUTE_TYPE_TF32 if self.tf32
                        else self._linalg.COMPUTE_TYPE_DEFAULT)
        self._rows: dict = {}  # per-row loss scratch of the softmax head, by (m, dtype)

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
                "xp": f"cupy {cupy.__version__}", "tf32": tf32}

    @staticmethod
    def _fused(*arrays) -> bool:
        """Whether the kernels take these arrays: one dtype, float32 or float64, C-contiguous."""
        dt = arrays[0].dtype
        return dt in FLOATS and all(a.dtype == dt and a.flags.c_contiguous for a in arrays)

    # ----------------------------------------------------------------- primitives
    def matmul(self, a, b, out):
        if out.dtype == FLOATS[0] and self._linalg.get_compute_type(out.dtype) != self._gemm32:
            self._linalg.set_compute_type(out.dtype, self._gemm32)
        return cupy.matmul(a, b, out=out)

    def bias_act(self, Z, b, act):
        if ACTIVATIONS.get(act.name) is not act or not self._fused(Z, b):
            return super().bias_act(Z, b, act)
        K.bias_act(act.name)(b, Z)
        return Z

    def act_grad(self, dA, A, act):
        if act.name not in K.GRAD or ACTIVATIONS[act.name] is not act or not self._fused(dA, A):
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

    def loss_delta(self, Z, Y, head, out):
        if HEADS.get(head.name) is not head or not self._fused(Z, Y, out):
            return super().loss_delta(Z, Y, head, out)
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

    # ----------------------------------------------------------------- optimizer updates
    def sgd_update(self, params, grads, lr: float):
        if not self._fused(*params, *grads):
            return super().sgd_update(params, grads, lr)
        kernel, lr = K.sgd(), params[0].dtype.type(lr)
        for p, g in zip(params, grads):
            kernel(g, lr, p)

    def momentum_update(self, params, grads, velocities, lr: float, momentum: float,
                        nesterov: bool):
        if not self._fused(*params, *grads, *velocities):
            return super().momentum_update(params, grads, velocities, lr, momentum, nesterov)
        t = params[0].dtype.type
        kernel, lr, momentum = K.momentum(bool(nesterov)), t(lr), t(momentum)
        for p, g, v in zip(params, grads, velocities):
            kernel(g, lr, momentum, p, v)

    def adam_update(self, params, grads, ms, vs, lr: float, beta1: float, beta2: float,
                    eps: float, step: int, weight_decay: float = 0.0):
        if not self._fused(*params, *grads, *ms, *vs):
            return super().adam_update(params, grads, ms, vs, lr, beta1, beta2, eps, step,
                                       weight_decay)
        t = params[0].dtype.type
        lr_t = np.float64(lr * np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step))
        scalars = (t(beta1), t(beta2), t(1.0 - beta1), t((1.0 - beta2) / (1.0 - beta1) ** 2),
                   t(eps), t(1.0 - lr * weight_decay), lr_t)
        kernel = K.adam()
        for p, g, m, v in zip(params, grads, ms, vs):
            kernel(g, *scalars, p, m, v)

    def rmsprop_update(self, params, grads, sqs, lr: float, rho: float, eps: float):
        if not self._fused(*params, *grads, *sqs):
            return super().rmsprop_update(params, grads, sqs, lr, rho, eps)
        t = params[0].dtype.type
        kernel, scalars = K.rmsprop(), (t(rho), t(1.0 - rho), t(lr), t(eps))
        for p, g, sq in zip(params, grads, sqs):
            kernel(g, *scalars, p, sq)
