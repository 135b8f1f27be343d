"""Numba kernels of the numba backend (imported only when that backend is used).

Each kernel fuses the elementwise work around one BLAS GEMM into a single pass over C-contiguous
2-D arrays, in place. The activation is dispatched on a small integer code by `_by_code`, which
compiles the loop once per activation with the scalar function inlined, so that LLVM vectorizes
it. Scalars (lr, 1/m, optimizer constants) arrive already cast to the array dtype, and the
constants inside the scalar functions are float32 values exact in both dtypes (0, 1/2, 1), so
float32 arithmetic stays float32 (a Python float constant would promote it to float64).

Transcendental functions are chosen per dtype (`_per_dtype`): float64 calls libm (math.tanh,
math.exp, math.log1p: the NumPy backend's results to ~1 ulp); float32 evaluates polynomial
approximations in float32 arithmetic, a few ulp accurate and branch-free, so loops over them
vectorize (libm calls do not: 1600 scalar tanhf took 13 us, NumPy's SIMD ufunc 0.5 us).

Every reduction runs in a fixed order that depends only on the shapes, so results never depend
on the thread count. Every kernel is serial: measured on a 2-core machine, `parallel=True`
versions interleaved with multithreaded BLAS were slower than these (see the numba backend).

`train_step` is the whole-step fast path for small dense networks: forward, loss, backward and
SGD in one call, the GEMMs written as loops over the samples in a (features, samples) layout.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from accelnn.activations import LEAKY_SLOPE

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTPLUS = range(6)
ACT_CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU,
             "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS}
HEAD_CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "softmax": 6}
SOFTMAX = 6

ZERO, HALF, ONE = np.float32(0.0), np.float32(0.5), np.float32(1.0)


def kernel(fn=None, **options):
    """@njit(cache=True) with NumPy's error model: x / 0 gives inf or nan, as in the NumPy
    backend, instead of Python's ZeroDivisionError, whose check kept loops from vectorizing."""
    if fn is None:
        return lambda fn: kernel(fn, **options)
    return njit(cache=True, error_model="numpy", **options)(fn)


# ---------------------------------------------------------------------- float32 approximations
def _per_dtype(float32_impl, libm_impl):
    """A scalar function for jitted code: `float32_impl` on float32, `libm_impl` otherwise."""

    def fn(x):
        return libm_impl(x)

    overload(fn, inline="always")(
        lambda x: float32_impl if x == types.float32 else (lambda x: libm_impl(x)))
    return fn


@intrinsic
def _pow2(typingctx, n):
    """2**n as float32 for an integral float32 n in [-126, 127], built from its exponent bits."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        e = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(e, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


# tanh: the rational minimax p(x)/q(x) of Eigen, XLA and MLAS (odd numerator of degree 13,
# even denominator of degree 6; within 6 ulp), on x clamped to [-9, 9] (tanh(9) rounds to 1);
# x itself below 4e-4.
_T13, _T11, _T9, _T7, _T5, _T3, _T1 = (np.float32(c) for c in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03))
_Q6, _Q4, _Q2, _Q0 = (np.float32(c) for c in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03))
_TANH_CLAMP, _TANH_TINY = np.float32(9.0), np.float32(4e-4)
# exp: Cephes' expf, x = n ln2 + r with ln2 split in two, e^r = 1 + r + r^2 P(r), within 2 ulp.
_E5, _E4, _E3, _E2, _E1, _E0 = (np.float32(c) for c in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))
_LOG2E, _LN2_HI, _LN2_LO = (np.float32(c) for c in (1.44269504088896341, 0.693359375,
                                                     -2.12194440e-4))
_EXP_LO, _EXP_HI = np.float32(-87.0), np.float32(88.0)
# log1p(x) for x in [0, 1]: 2 atanh(u), u = x / (2 + x) in [0, 1/3], as the odd series
# 2 (u + u^3/3 + ... + u^13/13); the next term is below 2e-8 of the sum; within 4 ulp.
_A13, _A11, _A9, _A7, _A5, _A3 = (np.float32(1.0 / k) for k in (13, 11, 9, 7, 5, 3))
_TWO = np.float32(2.0)


def _tanh_f32(x):
    y = np.minimum(np.maximum(x, -_TANH_CLAMP), _TANH_CLAMP)  # NaN stays NaN
    w = y * y
    p = ((((((_T13 * w + _T11) * w + _T9) * w + _T7) * w + _T5) * w + _T3) * w + _T1) * y
    q = ((_Q6 * w + _Q4) * w + _Q2) * w + _Q0
    return x if abs(x) < _TANH_TINY else p / q


def _exp_f32(x):
    x = np.minimum(np.maximum(x, _EXP_LO), _EXP_HI)
    n = np.floor(x * _LOG2E + HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = ((((_E5 * r + _E4) * r + _E3) * r + _E2) * r + _E1) * r + _E0
    return (p * r * r + r + ONE) * _pow2(n)


def _log1p_unit_f32(x):
    u = x / (_TWO + x)
    w = u * u
    return _TWO * u * ((((((_A13 * w + _A11) * w + _A9) * w + _A7) * w + _A5) * w + _A3) * w
                         + ONE)


_tanh = _per_dtype(_tanh_f32, math.tanh)
_exp = _per_dtype(_exp_f32, math.exp)
_log1p_unit = _per_dtype(_log1p_unit_f32, math.log1p)  # for arguments in [0, 1]


# ---------------------------------------------------------------------- activations
@njit(inline="always")
def _identity(z):
    return z


@njit(inline="always")
def _sigmoid_e(z, e):
    """sigmoid(z) from e = exp(-|z|): 1 / (1 + e), or e / (1 + e) below 0; never overflows."""
    s = ONE / (ONE + e)
    return s if z >= ZERO else e * s


@njit(inline="always")
def _sigmoid(z):
    return _sigmoid_e(z, _exp(-abs(z)))


@njit(inline="always")
def _tanh_act(z):
    return _tanh(z)


@njit(inline="always")
def _relu(z):
    return z if z > 0 else z * ZERO


@njit(inline="always")
def _leaky_relu(z):
    return max(z, z * LEAKY_SLOPE)


@njit(inline="always")
def _softplus(z):
    return max(z, ZERO) + _log1p_unit(_exp(-abs(z)))


# Derivatives written from the output a = g(z).
@njit(inline="always")
def _d_identity(a):
    return ONE


@njit(inline="always")
def _d_sigmoid(a):
    return a * (ONE - a)


@njit(inline="always")
def _d_tanh(a):
    return ONE - a * a


@njit(inline="always")
def _d_relu(a):
    return ONE if a > 0 else ZERO


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
def _flat(a):
    """A 1-D view of a C-contiguous array."""
    return a.reshape(a.size)


@njit(inline="always")
def _bias_act_loop(Z, b, f):
    m, n = Z.shape
    for i in range(m):
        for j in range(n):
            Z[i, j] = f(Z[i, j] + b[j])


@njit(inline="always")
def _map_loop(Z, _, f):
    Z = _flat(Z)
    for i in range(Z.size):
        Z[i] = f(Z[i])


@njit(inline="always")
def _act_grad_loop(dA, A, f):
    m, n = dA.shape
    for i in range(m):
        for j in range(n):
            dA[i, j] *= f(A[i, j])


@kernel
def bias_act(Z, b, code):
    """Z <- g(Z + b), in place."""
    _by_code(code, _bias_act_loop, Z, b, _identity, _sigmoid, _tanh_act, _relu, _leaky_relu,
             _softplus)


@kernel
def act_grad(dA, A, code):
    """dA <- dA * g'(A), in place, the derivative written from the output A."""
    _by_code(code, _act_grad_loop, dA, A, _d_identity, _d_sigmoid, _d_tanh, _d_relu,
             _d_leaky_relu, _d_softplus)


@kernel
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


@njit(inline="always")
def _row_max(Z, i):
    """The largest logit of row i (the shift that keeps softmax's exp from overflowing)."""
    mx = Z[i, 0]
    for j in range(1, Z.shape[1]):
        mx = max(mx, Z[i, j])
    return mx


@kernel
def activate(Z, code):
    """Z <- h(Z) for output head or activation `code`, in place."""
    if code != SOFTMAX:
        _by_code(code, _map_loop, Z, Z, _identity, _sigmoid, _tanh_act, _relu, _leaky_relu,
                 _softplus)
        return
    m, n = Z.shape
    for i in range(m):
        mx = _row_max(Z, i)
        s = Z[i, 0] * ZERO
        for j in range(n):
            Z[i, j] = _exp(Z[i, j] - mx)
            s += Z[i, j]
        for j in range(n):
            Z[i, j] /= s


@kernel(fastmath={"reassoc"})
def _sum(x):
    """The sum of x in float64, reassociated into vector lanes (an order fixed by x.size and the
    vector width)."""
    s = 0.0
    for i in range(x.size):
        s += x[i]
    return s


@kernel
def loss_delta(Z, Y, out, code, inv_m):
    """out <- (h(Z) - Y) * inv_m (out may be Z); returns the head's loss, summed in float64
    from the logits: BCE as max(z,0) - z y + log1p(exp(-|z|)), CE with log-sum-exp, squared
    error / 2. Sigmoid and identity make one flat pass (vectorized) and sum its terms apart."""
    m, n = Z.shape
    if code == SOFTMAX:
        total = 0.0
        for i in range(m):
            mx = _row_max(Z, i)
            s = Z[i, 0] * ZERO
            for j in range(n):
                sh = Z[i, j] - mx
                total -= Y[i, j] * sh
                out[i, j] = _exp(sh)
                s += out[i, j]
            total += math.log(s)
            for j in range(n):
                out[i, j] = (out[i, j] / s - Y[i, j]) * inv_m
        return total / m
    # In place on `out`: with out = Z, a loop reading Z and writing out failed LLVM's runtime
    # overlap check and ran scalar (5x slower).
    y, o = _flat(np.ascontiguousarray(Y)), _flat(out)
    o[:] = _flat(Z)
    terms = np.empty(o.size)
    if code == SIGMOID:
        for i in range(o.size):
            z, yi = o[i], y[i]
            e = _exp(-abs(z))
            terms[i] = max(z, ZERO) - z * yi + _log1p_unit(e)
            o[i] = (_sigmoid_e(z, e) - yi) * inv_m
    else:
        for i in range(o.size):
            d = o[i] - y[i]
            terms[i] = d * d * HALF
            o[i] = d * inv_m
    return _sum(terms) / m


# ---------------------------------------------------------------------- optimizer updates
# One kernel per rule of accelnn.optimizers, called as kernel(p, g, *state arrays, *scalars)
# with the rule's scalars cast to the array dtype: its reference's operations, in its order,
# one element at a time (g is left alone).
@kernel
def sgd(p, g, lr):
    """p <- p - lr g."""
    p, g = _flat(p), _flat(g)
    for i in range(p.size):
        p[i] -= g[i] * lr


@njit(inline="always")
def _momentum_loop(p, g, v, lr, mu, nesterov):
    """v <- mu v - lr g; p <- p + v, or p - lr g + mu v with Nesterov."""
    p, g, v = _flat(p), _flat(g), _flat(v)
    for i in range(p.size):
        step = g[i] * lr
        v[i] = v[i] * mu - step
        if nesterov:
            p[i] = p[i] - step + v[i] * mu
        else:
            p[i] += v[i]


@kernel
def momentum(p, g, v, lr, mu):
    """v <- mu v - lr g; p <- p + v."""
    _momentum_loop(p, g, v, lr, mu, False)


@kernel
def nesterov(p, g, v, lr, mu):
    """v <- mu v - lr g; p <- p - lr g + mu v."""
    _momentum_loop(p, g, v, lr, mu, True)


@kernel
def adam(p, g, m, v, lr_t, beta1, beta2, c1, c2, eps, decay):
    """m <- beta1 m + c1 g; v <- beta2 v + (c1 g)^2 c2; p <- decay p - lr_t m / (sqrt(v) + eps)."""
    p, g, m, v = _flat(p), _flat(g), _flat(m), _flat(v)
    for i in range(p.size):
        gs = g[i] * c1
        m[i] = m[i] * beta1 + gs
        v[i] = v[i] * beta2 + gs * gs * c2
        p[i] = p[i] * decay - m[i] / (math.sqrt(v[i]) + eps) * lr_t


@kernel
def rmsprop(p, g, sq, lr, rho, c, eps):
    """sq <- rho sq + c g^2; p <- p - lr g / (sqrt(sq) + eps)."""
    p, g, sq = _flat(p), _flat(g), _flat(sq)
    for i in range(p.size):
        sq[i] = sq[i] * rho + c * (g[i] * g[i])
        p[i] -= g[i] * lr / (math.sqrt(sq[i]) + eps)


UPDATES = {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adam": adam,
           "rmsprop": rmsprop}


# ---------------------------------------------------------------------- whole training step
# Activations are kept as (features, samples) arrays, so that every inner loop runs over the
# samples: contiguous, long, and vectorized, with one weight held in a register per pass.
@njit(inline="always")
def _transpose(src, dst):
    """dst <- src.T, along the rows of whichever of the two has fewer (long inner loops)."""
    if dst.shape[0] <= src.shape[0]:
        for j in range(dst.shape[0]):
            d = dst[j]
            for i in range(d.size):
                d[i] = src[i, j]
    else:
        for i in range(src.shape[0]):
            s = src[i]
            for j in range(s.size):
                dst[j, i] = s[j]


@njit(inline="always")
def _dense_t(W, b, A, out):
    """out <- W.T @ A + b[:, None]: Z of a layer, (n_out, m), from A (n_in, m)."""
    for j in range(W.shape[1]):
        o, bj = out[j], b[j]
        for i in range(o.size):
            o[i] = bj
        for k in range(W.shape[0]):
            w, a = W[k, j], A[k]
            for i in range(o.size):
                o[i] += w * a[i]


@njit(inline="always")
def _back_t(D, W, out):
    """out <- W @ D: the upstream gradient, (n_in, m), from the layer's delta D (n_out, m)."""
    for k in range(W.shape[0]):
        o = out[k]
        w, d = W[k, 0], D[0]
        for i in range(o.size):
            o[i] = w * d[i]
        for j in range(1, W.shape[1]):
            w, d = W[k, j], D[j]
            for i in range(o.size):
                o[i] += w * d[i]


@kernel(fastmath={"reassoc"})
def _grads_t(A, D, dW, db):
    """dW <- A @ D.T and db <- row sums of D, with A (n_in, m) and D (n_out, m), summed over
    the samples in float64 (reassociated into vector lanes: an order fixed by m and the
    vector width)."""
    for j in range(D.shape[0]):
        d = D[j]
        s = 0.0
        for i in range(d.size):
            s += d[i]
        db[j] = s
        for k in range(A.shape[0]):
            a = A[k]
            s = 0.0
            for i in range(d.size):
                s += a[i] * d[i]
            dW[k, j] = s


@kernel
def train_step(Ws, bs, gWs, gbs, acts, head, X, Y, bufs, update, lr, inv_m, l2_half, l2_m):
    """One training step of a dense network with at least one hidden layer: forward, loss and
    output delta, backward into gWs/gbs, the L2 terms (l2_m = l2/m, l2_half = l2/(2m)), then
    SGD with `lr` when `update` (else the caller's optimizer updates). Returns the loss.

    bufs = (X.T (n0, m), Z[l].T then A[l].T (n_l, m) for every layer, the hidden deltas
    (n_l, m), the output (m, n_L) for `loss_delta`), all of X's dtype."""
    L = len(Ws)
    XT, out = bufs[0], bufs[-1]
    _transpose(X, XT)
    A = XT
    for l in range(L):
        _dense_t(Ws[l], bs[l], A, bufs[1 + l])
        A = bufs[1 + l]
        if l < L - 1:
            activate(A, acts[l])
    _transpose(A, out)
    loss = loss_delta(out, Y, out, head, inv_m)
    _transpose(out, A)
    delta = A
    for l in range(L - 1, -1, -1):
        A_prev = bufs[l]  # X.T for the first layer
        _grads_t(A_prev, delta, gWs[l], gbs[l])
        if l > 0:
            D = bufs[L + l]
            _back_t(delta, Ws[l], D)
            act_grad(D, A_prev, acts[l - 1])
            delta = D
    if l2_m != 0:
        for l in range(L):
            W, dW = _flat(Ws[l]), _flat(gWs[l])
            sq = 0.0
            for i in range(W.size):
                sq += W[i] * W[i]
                dW[i] += W[i] * l2_m
            loss += l2_half * sq
    if update:
        for l in range(L):
            sgd(Ws[l], gWs[l], lr)
            sgd(bs[l], gbs[l], lr)
    return loss
