"""Numba kernels of the numba backend (imported only when that backend is used).

Each kernel fuses the elementwise work around one BLAS GEMM into a single pass over C-contiguous
2-D arrays, in place. The activation is dispatched on a small integer code inside the scalar
helpers `_act` / `_dact`; the code is loop-invariant, so LLVM unswitches the loop and vectorizes
the cheap cases (identity, relu, leaky_relu). Scalars (lr, 1/m, optimizer constants) arrive
already cast to the array dtype, so float32 arithmetic stays float32 and follows, operation by
operation, the generic NumPy formulas of `accelnn.backends.base` and `accelnn.losses`.

Every reduction runs in a fixed serial order (rows in order for the bias gradient, elements in
order for a loss), so results never depend on the thread count. Every kernel is serial: measured
on a 2-core machine, `parallel=True` versions interleaved with multithreaded BLAS were slower
than these (see the numba backend's docstring).

`train_step` is the whole-step fast path for small dense networks: forward, loss, backward and
SGD in one call, GEMMs written as loops (no BLAS call overhead) in the same order of operations.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTPLUS = range(6)
ACT_CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU,
             "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS}
HEAD_CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "softmax": 6}
SOFTMAX = 6
# g(z) needs tanh/exp/log1p: NumPy's SIMD ufuncs run these 10-20x faster than the scalar libm
# calls a numba loop makes (1600 tanh: 0.6 us vs 12 us), so the backend leaves them to NumPy.
TRANSCENDENTAL = (SIGMOID, TANH, SOFTPLUS)
LEAKY_SLOPE = 0.01  # accelnn.activations.LEAKY_SLOPE


@njit(inline="always")
def _identity(z):
    return z


@njit(inline="always")
def _sigmoid(z):  # 0.5 (1 + tanh(z / 2)): never overflows, the formula of activations.py
    return (math.tanh(z * 0.5) + 1.0) * 0.5


@njit(inline="always")
def _tanh(z):
    return math.tanh(z)


@njit(inline="always")
def _relu(z):
    return z if z > 0 else z * 0


@njit(inline="always")
def _leaky_relu(z):
    return max(z, z * LEAKY_SLOPE)


@njit(inline="always")
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


# Derivatives written from the output a = g(z).
@njit(inline="always")
def _d_identity(a):
    return 1.0


@njit(inline="always")
def _d_sigmoid(a):
    return a * (1.0 - a)


@njit(inline="always")
def _d_tanh(a):
    return 1.0 - a * a


@njit(inline="always")
def _d_relu(a):
    return 1.0 if a > 0 else 0.0


@njit(inline="always")
def _d_leaky_relu(a):
    return 1.0 if a > 0 else LEAKY_SLOPE


@njit(inline="always")
def _d_softplus(a):
    return -math.expm1(-a)


@njit(inline="always")
def _by_code(code, loop, X, Y, identity, sigmoid, tanh, relu, leaky_relu, softplus):
    """loop(X, Y, f) with f the function for activation `code` (a runtime int): one branch
    per activation, each compiling the loop with its scalar function inlined (vectorized
    where it can be; the code-inside-the-loop version did not vectorize and ran 80x slower
    on relu)."""
    if code == SIGMOID:
        loop(X, Y, sigmoid)
    elif code == TANH:
        loop(X, Y, tanh)
    elif code == RELU:
        loop(X, Y, relu)
    elif code == LEAKY_RELU:
        loop(X, Y, leaky_relu)
    elif code == SOFTPLUS:
        loop(X, Y, softplus)
    else:
        loop(X, Y, identity)


@njit(inline="always")
def _bias_act_loop(Z, b, f):
    m, n = Z.shape
    for i in range(m):
        for j in range(n):
            Z[i, j] = f(Z[i, j] + b[j])


@njit(inline="always")
def _act_grad_loop(dA, A, f):
    m, n = dA.shape
    for i in range(m):
        for j in range(n):
            dA[i, j] *= f(A[i, j])


@njit(cache=True)
def bias_act(Z, b, code):
    """Z <- g(Z + b), in place."""
    _by_code(code, _bias_act_loop, Z, b, _identity, _sigmoid, _tanh, _relu, _leaky_relu,
             _softplus)


@njit(cache=True)
def act_grad(dA, A, code):
    """dA <- dA * g'(A), in place, the derivative written from the output A."""
    _by_code(code, _act_grad_loop, dA, A, _d_identity, _d_sigmoid, _d_tanh, _d_relu,
             _d_leaky_relu, _d_softplus)


@njit(cache=True)
def bias_grad(dZ, out):
    """out <- sum of dZ over rows, rows added in order (NumPy's order for axis=0), in a
    float64 accumulator: float64 results equal NumPy's, float32 ones are more accurate (a
    bias gradient is a sum that mostly cancels)."""
    m, n = dZ.shape
    acc = np.zeros(n, np.float64)
    for i in range(m):
        for j in range(n):
            acc[j] += dZ[i, j]
    for j in range(n):
        out[j] = acc[j]


@njit(cache=True)
def activate(Z, code):
    """Z <- h(Z) for output head `code`, in place (prediction)."""
    m, n = Z.shape
    if code != SOFTMAX:
        _by_code(code, _bias_act_loop, Z, Z[0] * 0, _identity, _sigmoid, _tanh, _relu,
                 _leaky_relu, _softplus)
        return
    for i in range(m):
        mx = Z[i, 0]
        for j in range(1, n):
            mx = max(mx, Z[i, j])
        s = Z[i, 0] * 0
        for j in range(n):
            Z[i, j] = math.exp(Z[i, j] - mx)
            s += Z[i, j]
        for j in range(n):
            Z[i, j] /= s


@njit(cache=True)
def loss_delta(Z, Y, out, code, inv_m):
    """out <- (h(Z) - Y) * inv_m (out may be Z); returns the head's loss, summed in float64
    from the logits: BCE as max(z,0) - z y + log1p(exp(-|z|)), CE with log-sum-exp, squared
    error / 2."""
    m, n = Z.shape
    total = 0.0
    for i in range(m):
        if code == SOFTMAX:
            mx = Z[i, 0]
            for j in range(1, n):
                mx = max(mx, Z[i, j])
            s = Z[i, 0] * 0
            for j in range(n):
                sh = Z[i, j] - mx
                total -= Y[i, j] * sh
                out[i, j] = math.exp(sh)
                s += out[i, j]
            total += math.log(s)
            for j in range(n):
                out[i, j] = (out[i, j] / s - Y[i, j]) * inv_m
        elif code == SIGMOID:
            for j in range(n):
                z = Z[i, j]
                total += max(z, 0.0) - z * Y[i, j] + math.log1p(math.exp(-abs(z)))
                out[i, j] = (_sigmoid(z) - Y[i, j]) * inv_m
        else:
            for j in range(n):
                d = Z[i, j] - Y[i, j]
                total += d * d * 0.5
                out[i, j] = d * inv_m
    return total / m


@njit(inline="always")
def _flat(a):
    """A 1-D view of a C-contiguous array."""
    return a.reshape(a.size)


@njit(cache=True)
def sgd(p, g, lr):
    """p <- p - lr g."""
    p, g = _flat(p), _flat(g)
    for i in range(p.size):
        p[i] -= g[i] * lr


@njit(cache=True)
def momentum(p, g, v, lr, mu, nesterov):
    """v <- mu v - lr g; p <- p + v, or p - lr g + mu v with Nesterov."""
    p, g, v = _flat(p), _flat(g), _flat(v)
    for i in range(p.size):
        step = g[i] * lr
        v[i] = v[i] * mu - step
        if nesterov:
            p[i] = p[i] - step + v[i] * mu
        else:
            p[i] += v[i]


@njit(cache=True)
def adam(p, g, m, v, lr_t, beta1, beta2, c1, c2, eps, decay):
    """Adam as Backend.adam_update: c1 = 1 - beta1, c2 = (1 - beta2) / c1^2, decay = 1 - lr wd
    (1 for none), lr_t the bias-corrected step."""
    p, g, m, v = _flat(p), _flat(g), _flat(m), _flat(v)
    for i in range(p.size):
        gs = g[i] * c1
        m[i] = m[i] * beta1 + gs
        v[i] = v[i] * beta2 + gs * gs * c2
        p[i] = p[i] * decay - m[i] / (math.sqrt(v[i]) + eps) * lr_t


@njit(inline="always")
def _gemm_nn(A, W, out):
    """out <- A @ W."""
    m, n_in = A.shape
    n_out = W.shape[1]
    for i in range(m):
        for j in range(n_out):
            out[i, j] = 0
        for k in range(n_in):
            a = A[i, k]
            for j in range(n_out):
                out[i, j] += a * W[k, j]


@njit(inline="always")
def _gemm_tn(A, D, out):
    """out <- A.T @ D."""
    out[:, :] = 0
    for i in range(A.shape[0]):
        for k in range(A.shape[1]):
            a = A[i, k]
            for j in range(D.shape[1]):
                out[k, j] += a * D[i, j]


@njit(inline="always")
def _gemm_nt(D, W, out):
    """out <- D @ W.T."""
    for i in range(D.shape[0]):
        for k in range(W.shape[0]):
            s = D[i, 0] * W[k, 0]
            for j in range(1, W.shape[1]):
                s += D[i, j] * W[k, j]
            out[i, k] = s


@njit(cache=True)
def train_step(Ws, bs, gWs, gbs, acts, head, As, Ds, X, Y, lr, inv_m, l2_half, l2_m):
    """One training step of a dense network with at least one hidden layer: forward into As,
    loss + output delta, backward into gWs/gbs (Ds: the hidden deltas), the L2 terms (l2_m =
    l2/m, l2_half = l2/(2m)), then SGD with `lr` unless lr is 0 (the caller's optimizer
    updates instead). Returns the loss."""
    L = len(Ws)
    prev = X
    for l in range(L):
        _gemm_nn(prev, Ws[l], As[l])
        bias_act(As[l], bs[l], acts[l] if l < L - 1 else IDENTITY)
        prev = As[l]
    loss = loss_delta(prev, Y, prev, head, inv_m)
    delta = prev
    for l in range(L - 1, -1, -1):
        A_prev = As[l - 1] if l > 0 else X
        _gemm_tn(A_prev, delta, gWs[l])
        bias_grad(delta, gbs[l])
        if l > 0:
            _gemm_nt(delta, Ws[l], Ds[l - 1])
            act_grad(Ds[l - 1], A_prev, acts[l - 1])
            delta = Ds[l - 1]
    if l2_m != 0:
        for l in range(L):
            W, dW = _flat(Ws[l]), _flat(gWs[l])
            sq = W[0] * 0
            for i in range(W.size):
                sq += W[i] * W[i]
                dW[i] += W[i] * l2_m
            loss += l2_half * sq
    if lr != 0:
        for l in range(L):
            sgd(Ws[l], gWs[l], lr)
            sgd(bs[l], gbs[l], lr)
    return loss
