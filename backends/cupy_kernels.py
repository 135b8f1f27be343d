"""CUDA kernels of the cupy backend, one per fused primitive of `accelnn.backends.base.Backend`.

Every formula repeats the NumPy code it replaces (accelnn.activations, accelnn.losses and the
optimizers' reference updates) operation for operation, with every constant cast to the array
type T as NumPy casts a Python float. Everything is compiled with `--fmad=false`, so the CUDA
compiler does not contract `a * b + c` into one fused multiply-add: +, -, *, / and sqrt then
round exactly as NumPy's do, and float64 results differ from the NumPy backend only through the
transcendental functions (tanh, exp, log1p, expm1: an ulp or two) and through the order of
summation in reductions.

Kernels are built on first use (CuPy compiles them per dtype at their first call and caches the
binaries on disk), so importing this module touches no device.
"""

from __future__ import annotations

import functools

import cupy

from accelnn.activations import LEAKY_SLOPE
from accelnn.optimizers import RULES

OPTIONS = ("--fmad=false",)
CTYPES = {"float32": "float", "float64": "double"}

# g(s) for s = z + b; `s < 0 ? 0 : s` is numpy.maximum(s, 0) and, like it, keeps NaN.
FORWARD = {
    "identity": "s",
    "sigmoid": "(tanh(s * (T)0.5) + (T)1) * (T)0.5",
    "tanh": "tanh(s)",
    "relu": "s < (T)0 ? (T)0 : s",
    "leaky_relu": f"s < s * (T){LEAKY_SLOPE!r} ? s * (T){LEAKY_SLOPE!r} : s",
    "softplus": "(s < (T)0 ? (T)0 : s) + log1p(exp(-fabs(s)))",
}

# d * g'(z), written from the layer's output a = g(z). The identity has nothing to do.
GRAD = {
    "sigmoid": "d * a * ((T)1 - a)",
    "tanh": "d * ((T)1 - a * a)",
    "relu": "d * (T)(a > (T)0)",
    "leaky_relu": f"d * (a > (T)0 ? (T)1 : (T){LEAKY_SLOPE!r})",
    "softplus": "d * -expm1(-a)",
}

# Per head: the inputs and per-element term of its loss sum, and the divisor of that sum in
# samples (the loss is sum / (DIVISOR * m)). "softmax" sums the per-row terms that the
# softmax_delta kernel below leaves in `row`.
LOSS = {
    "sigmoid": ("T z, T y", "(log1p(exp(-fabs(z))) + (z < (T)0 ? (T)0 : z)) - z * y", 1),
    "identity": ("T z, T y", "(z - y) * (z - y)", 2),
    "softmax": ("T row", "row", 1),
}

# Output activation of the heads whose delta is elementwise: z <- (h(z) - y) / m.
DELTA_ACTIVATION = {"sigmoid": "sigmoid", "identity": "identity"}

RAW_SOURCE = r"""
template <typename T>
__device__ T nan_max(T a, T b) { return (a > b || a != a) ? a : b; }

template <typename T>
__device__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

template <typename T>
__device__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out[j] = sum_i a[i, j] for a C-contiguous (m, n) matrix. Block (32, 32): threadIdx.x picks a
// column of the block's 32 (coalesced loads), threadIdx.y a stride-32 subset of the rows; the
// 32 partial sums of a column are then added in a fixed order (deterministic).
template <typename T>
__global__ void column_sum(const T* a, T* out, int m, int n) {
    __shared__ T part[32][32];
    int j = blockIdx.x * 32 + threadIdx.x;
    T s = 0;
    if (j < n)
        for (int i = threadIdx.y; i < m; i += 32) s += a[(size_t)i * n + j];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < n) {
        for (int k = 1; k < 32; ++k) s += part[k][threadIdx.x];
        out[j] = s;
    }
}

// Softmax head, one warp per row i of the (m, n) logits z, in place:
//   s = z - max_k z_k,  z <- (exp(s) / sum_k exp(s_k) - y) * inv_m,
//   r[i] = log(sum_k exp(s_k)) - sum_k y_k s_k   (the row's cross-entropy; rows of y sum to 1).
// Block (32, 8): eight rows per block. Each lane owns the columns lane, lane + 32, ... in every
// pass, so it reads each z before it overwrites it.
template <typename T>
__global__ void softmax_delta(const T* y, T* z, T* r, int m, int n, T inv_m) {
    int i = blockIdx.x * blockDim.y + threadIdx.y;
    if (i >= m) return;
    int lane = threadIdx.x;
    T* zi = z + (size_t)i * n;
    const T* yi = y + (size_t)i * n;
    T mx = zi[0];
    for (int k = lane; k < n; k += 32) mx = nan_max(zi[k], mx);
    mx = warp_max(mx);
    T se = 0, ys = 0;
    for (int k = lane; k < n; k += 32) {
        T s = zi[k] - mx;
        se += exp(s);
        ys += yi[k] * s;
    }
    se = warp_sum(se);
    ys = warp_sum(ys);
    for (int k = lane; k < n; k += 32) zi[k] = (exp(zi[k] - mx) / se - yi[k]) * inv_m;
    if (lane == 0) r[i] = log(se) - ys;
}
"""
RAW_KERNELS = ("column_sum", "softmax_delta")
SOFTMAX_ROWS_PER_BLOCK = 8


@functools.cache
def _raw_module():
    names = [f"{k}<{c}>" for k in RAW_KERNELS for c in CTYPES.values()]
    return cupy.RawModule(code=RAW_SOURCE, options=OPTIONS, name_expressions=names)


def raw(kernel: str, dtype):
    """The RawKernel `kernel` (one of RAW_KERNELS) for float32 or float64."""
    return _raw_module().get_function(f"{kernel}<{CTYPES[dtype.name]}>")


@functools.cache
def bias_act(activation: str):
    """z <- g(z + b) in place: call as kernel(b, Z), b broadcast over the rows of Z."""
    return cupy.ElementwiseKernel("T b", "T z", f"T s = z + b; z = {FORWARD[activation]};",
                                  f"accelnn_bias_{activation}", options=OPTIONS)


@functools.cache
def act_grad(activation: str):
    """d <- d * g'(a) in place: call as kernel(A, dA)."""
    return cupy.ElementwiseKernel("T a", "T d", f"d = {GRAD[activation]};",
                                  f"accelnn_grad_{activation}", options=OPTIONS)


@functools.cache
def loss_sum(head: str):
    """The head's loss, sum of its terms / divisor, as a 0-d array: kernel(*inputs, divisor)."""
    params, term, _ = LOSS[head]
    return cupy.ReductionKernel(f"{params}, T divisor", "T loss", term, "a + b",
                                "loss = a / divisor", "0", f"accelnn_loss_{head}",
                                options=OPTIONS)


@functools.cache
def sq_sum():
    """The sum of x^2 over all of x, accumulated in float64, as a 0-d array of x's type:
    kernel(x). (CuPy's vdot would call cuBLAS, which a CUDA graph recording cannot.)"""
    return cupy.ReductionKernel("T x", "T y", "(double)x * (double)x", "a + b", "y = (T)a", "0",
                                "accelnn_sq_sum", reduce_type="double", options=OPTIONS)


@functools.cache
def output_delta(head: str):
    """z <- (h(z) - y) * inv_m in place, for the heads in DELTA_ACTIVATION: kernel(Y, inv_m, Z)."""
    h = FORWARD[DELTA_ACTIVATION[head]]
    return cupy.ElementwiseKernel("T y, T inv_m", "T z", f"T s = z; z = ({h} - y) * inv_m;",
                                  f"accelnn_delta_{head}", options=OPTIONS)


@functools.cache
def axpy():
    """y <- y + c * x in place: kernel(x, c, y)."""
    return cupy.ElementwiseKernel("T x, T c", "T y", "y = y + c * x;", "accelnn_axpy",
                                  options=OPTIONS)


# The optimizer updates, each one kernel for all the parameters of a network, by rule name
# (accelnn.optimizers.RULES): the update of one element, the rule's reference operation for
# operation. The kernel's parameters are the reference's: p and the state arrays (named as in
# the reference) as references into their tensors, g, and the scalars, of the array type T.
UPDATES = {
    "sgd": "p = p - g * lr;",
    "momentum": "T gl = g * lr; v = v * mu - gl; p = p + v;",
    "nesterov": "T gl = g * lr; v = v * mu - gl; p = (p - gl) + v * mu;",
    "adam": "T g1 = g * c1; m = m * beta1 + g1; v = v * beta2 + g1 * g1 * c2;"
            "p = p * decay - m / (sqrt(v) + eps) * lr_t;",
    "rmsprop": "sq = sq * rho + c * (g * g); p = p - g * lr / (sqrt(sq) + eps);",
}

# Element i of the parameters laid end to end is element j = i - off[k] of tensor k, where
# off[k] <= i < off[k + 1]; ptr[a * n + k] is the address of array a (p, g, then the state
# arrays in the rule's order) of tensor k, for n tensors.
UPDATE_SOURCE = r"""
template <typename T>
__global__ void update_{name}(const unsigned long long* ptr, const long long* off, int n,
                              long long total, {scalars}) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {{
        int k = 0;
        while (i >= off[k + 1]) ++k;
        long long j = i - off[k];
        T& p = ((T*)ptr[k])[j];
        T g = ((const T*)ptr[n + k])[j];
        {state}
        {body}
    }}
}}
"""
UPDATE_THREADS, UPDATE_MAX_BLOCKS = 256, 8192


@functools.cache
def _update_module():
    code = "".join(
        UPDATE_SOURCE.format(name=name, body=body,
                             scalars=", ".join(f"T {a}" for a in RULES[name].scalars),
                             state=" ".join(f"T& {a} = ((T*)ptr[{i + 2} * n + k])[j];"
                                            for i, a in enumerate(RULES[name].states)))
        for name, body in UPDATES.items())
    names = [f"update_{k}<{c}>" for k in UPDATES for c in CTYPES.values()]
    return cupy.RawModule(code=code, options=OPTIONS, name_expressions=names)


def update(name: str, dtype):
    """The multi-tensor update kernel `name` (one of UPDATES) for float32 or float64; launch it
    as kernel(grid, block, (ptr, off, np.int32(n), np.int64(total), *scalars))."""
    return _update_module().get_function(f"update_{name}<{CTYPES[dtype.name]}>")
