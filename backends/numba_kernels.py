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

The compiled whole step and epoch loop (accelnn.backends.numba_step) and the small-network
step with hand-written matrix loops (accelnn.backends.numba_loops) are built from these kernels;
the helpers they inline without allocating (`head_loss_delta`, `add_bias_grad`, `flat`) are
public for them.
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
def flat(a):
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
    Z = flat(Z)
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


@njit(inline="always")
def add_bias_grad(dZ, out, acc):
    """out <- sum of dZ over rows, rows added in order (NumPy's order for axis=0), in the float64
    accumulator acc (at least dZ.shape[1] long): float64 results equal NumPy's, float32 ones are
    more accurate (a bias gradient is a sum that mostly cancels)."""
    m, n = dZ.shape
    acc[:n] = 0.0
    for i in range(m):
        for j in range(n):
            acc[j] += dZ[i, j]
    for j in range(n):
        out[j] = acc[j]


@kernel
def bias_grad(dZ, out):
    """out <- sum of dZ over rows (see add_bias_grad)."""
    add_bias_grad(dZ, out, np.empty(dZ.shape[1], np.float64))


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


@njit(inline="always")
def head_loss_delta(Z, Y, out, code, inv_m, terms):
    """out <- (h(Z) - Y) * inv_m (out may be Z, Y of Z's shape); returns the head's loss, summed
    in float64 from the logits: BCE as max(z,0) - z y + log1p(exp(-|z|)), CE with log-sum-exp,
    squared error / 2. Sigmoid and identity make one flat pass (vectorized) that writes their
    terms into the float64 scratch `terms` (at least Z.size long) and sums them apart."""
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
    y, o = flat(Y), flat(out)
    if o.ctypes.data != Z.ctypes.data:
        o[:] = flat(Z)
    terms = terms[:o.size]
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


@kernel
def loss_delta(Z, Y, out, code, inv_m):
    """head_loss_delta with a scratch of its own (Y made contiguous)."""
    return head_loss_delta(Z, np.ascontiguousarray(Y), out, code, inv_m, np.empty(Z.size))


@kernel(fastmath={"reassoc"})
def all_finite(a):
    """True when no element of the C-contiguous array a is NaN or Inf: one vectorized pass that
    adds up x * 0 (0 for a finite x, NaN otherwise), with no temporary array."""
    x, s = flat(a), a.dtype.type(0)
    for i in range(x.size):
        s += x[i] * ZERO
    return s == 0


# ---------------------------------------------------------------------- optimizer updates
# One kernel per rule of accelnn.optimizers, called as kernel(p, g, *state arrays, *scalars)
# with the rule's scalars cast to the array dtype: its reference's operations, in its order,
# one element at a time (g is left alone).
@kernel
def sgd(p, g, lr):
    """p <- p - lr g."""
    p, g = flat(p), flat(g)
    for i in range(p.size):
        p[i] -= g[i] * lr


@njit(inline="always")
def _momentum_loop(p, g, v, lr, mu, nesterov):
    """v <- mu v - lr g; p <- p + v, or p - lr g + mu v with Nesterov."""
    p, g, v = flat(p), flat(g), flat(v)
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
    p, g, m, v = flat(p), flat(g), flat(m), flat(v)
    for i in range(p.size):
        gs = g[i] * c1
        m[i] = m[i] * beta1 + gs
        v[i] = v[i] * beta2 + gs * gs * c2
        p[i] = p[i] * decay - m[i] / (math.sqrt(v[i]) + eps) * lr_t


@kernel
def rmsprop(p, g, sq, lr, rho, c, eps):
    """sq <- rho sq + c g^2; p <- p - lr g / (sqrt(sq) + eps)."""
    p, g, sq = flat(p), flat(g), flat(sq)
    for i in range(p.size):
        sq[i] = sq[i] * rho + c * (g[i] * g[i])
        p[i] -= g[i] * lr / (math.sqrt(sq[i]) + eps)


UPDATES = {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adam": adam,
           "rmsprop": rmsprop}
RULE_CODES = {name: code for code, name in enumerate(UPDATES)}
_SGD, _MOMENTUM, _NESTEROV, _ADAM, _RMSPROP = (RULE_CODES[n] for n in (
    "sgd", "momentum", "nesterov", "adam", "rmsprop"))


@njit(inline="always")
def apply_update(rule, p, g, s1, s2, sc):
    """The kernel of UPDATES with code `rule` (RULE_CODES) on one parameter p with gradient g,
    state arrays s1 and s2 (those the rule lacks: any arrays of p's type, left alone) and the
    rule's scalars in the array sc of p's dtype: for compiled steps, which hold every rule."""
    if rule == _SGD:
        sgd(p, g, sc[0])
    elif rule == _MOMENTUM:
        momentum(p, g, s1, sc[0], sc[1])
    elif rule == _NESTEROV:
        nesterov(p, g, s1, sc[0], sc[1])
    elif rule == _ADAM:
        adam(p, g, s1, s2, sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6])
    elif rule == _RMSPROP:
        rmsprop(p, g, s1, sc[0], sc[1], sc[2], sc[3])


@njit(inline="always")
def l2_and_update(W, b, gW, gb, S1W, S1b, S2W, S2b, rule, sc, update, l2_m):
    """The end of one layer's backward pass in a compiled step: the L2 term added to its
    weight gradient (gW += l2_m W, l2_m = l2 / m in the weights' dtype, scikit-learn's alpha
    over the batch's rows; nothing when l2_m is 0), then, when `update`, the update rule
    (apply_update) on W and b; returns sum ||W||^2 as float64 (0 without L2)."""
    sq = 0.0
    if l2_m != 0:
        w, dw = flat(W), flat(gW)
        for i in range(w.size):
            sq += w[i] * w[i]
            dw[i] += w[i] * l2_m
    if update:
        apply_update(rule, W, gW, S1W, S2W, sc)
        apply_update(rule, b, gb, S1b, S2b, sc)
    return sq
