"""L-BFGS for `MLP.fit(optimizer="lbfgs")`: scipy's L-BFGS-B on all the parameters at once,
full batch, as scikit-learn's `solver="lbfgs"` runs it (its default for small data sets).

The parameters travel to scipy flattened, [W1.ravel(), b1, W2.ravel(), ...], as float64 on
the host; each evaluation copies them into the model's parameters (any dtype, any backend)
and computes the loss and gradients with the backend (accelnn.network.loss_grads, the L2 term
and the sample weights included), then hands the gradients back in float64.

What fit's words mean for it, as in scikit-learn: `epochs` is scipy's `maxiter` (iterations;
scikit-learn's max_iter), and the History gets one entry per iteration; `max_fun` bounds the
loss evaluations (a line search may take several per iteration); `gtol` and `ftol` are
scipy's stopping tolerances (scikit-learn passes its `tol` as gtol and leaves ftol at scipy's
default). L-BFGS keeps no state between fits (a model trained by it saves no optimizer), so
checkpoints and resume_from are refused with it, as are mini-batches, learning rates and
schedules. Needs scipy (pip install 'accelnn[sklearn]').
"""

from __future__ import annotations

import numpy as np

from accelnn.optimizers import check_range

SCIPY_FTOL = 2.220446049250313e-09  # scipy's default for L-BFGS-B's ftol (factr 1e7 * eps)


def _count(name: str, value, low: int) -> int:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value >= low):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class LBFGS:
    """The settings of an L-BFGS fit (see the module docstring): `max_fun` loss evaluations
    at most, `gtol` (stop when the largest gradient component is at most gtol), `ftol` (stop
    when the relative loss reduction is at most ftol), `maxcor` corrections kept. The defaults
    are scipy's, with scikit-learn's max_fun. Raises ValueError for a value out of range."""

    name = "lbfgs"

    def __init__(self, max_fun: int = 15000, gtol: float = 1e-5, ftol: float = SCIPY_FTOL,
                 maxcor: int = 10):
        self.max_fun = _count("max_fun", max_fun, 1)
        self.gtol = check_range("gtol", gtol, 0.0)
        self.ftol = check_range("ftol", ftol, 0.0)
        self.maxcor = _count("maxcor", maxcor, 1)

    def __repr__(self) -> str:
        return (f"LBFGS(max_fun={self.max_fun}, gtol={self.gtol}, ftol={self.ftol}, "
                f"maxcor={self.maxcor})")


def is_lbfgs(optimizer) -> bool:
    """Whether fit's `optimizer` asks for L-BFGS ("lbfgs" in any case, or an LBFGS)."""
    return isinstance(optimizer, LBFGS) or (isinstance(optimizer, str)
                                            and optimizer.lower() == "lbfgs")


def need_scipy():
    """scipy.optimize, or ImportError saying how to install it."""
    try:
        import scipy.optimize
    except ImportError as exc:
        raise ImportError("optimizer='lbfgs' needs scipy: pip install 'accelnn[sklearn]' (or "
                          "pip install scipy)") from exc
    return scipy.optimize


def minimize(solver: LBFGS, state, loss_grads, max_iter: int, on_iteration):
    """Run L-BFGS-B from the parameters of the training state `state` for at most `max_iter`
    iterations and return scipy's OptimizeResult; the state ends with its `x`.

    loss_grads(params) -> float: the loss at `params` (a list of backend arrays shaped as the
        state's), its gradients left in state.grads. The line search's trial points are
        evaluated in buffers of their own: the state's parameters change only to whole
        iterates, so a prediction in another thread never sees a trial point.
    on_iteration(loss) is called after each iteration, with the state's parameters set to
        the iterate; returning True ends the minimisation there."""
    optimize = need_scipy()
    be, params = state.backend, state.params
    sizes = [p.size for p in params]
    ends = np.cumsum(sizes)

    def unflatten(x):
        return [x[e - n:e].reshape(p.shape) for e, n, p in zip(ends, sizes, params)]

    trial = [be.empty(p.shape, p.dtype) for p in params]

    def fun(x):
        for t, a in zip(trial, unflatten(x)):
            t[...] = be.asarray(a, t.dtype)
        loss = loss_grads(trial)
        grad = np.concatenate([np.asarray(be.to_numpy(g), dtype=np.float64).ravel()
                               for g in state.grads])
        return loss, grad

    def callback(intermediate_result):  # scipy passes an OptimizeResult by this name
        state.set_params(unflatten(intermediate_result.x))
        if on_iteration(float(intermediate_result.fun)):
            raise StopIteration

    x0 = np.concatenate([np.asarray(be.to_numpy(p), dtype=np.float64).ravel() for p in params])
    result = optimize.minimize(fun, x0, method="L-BFGS-B", jac=True, callback=callback,
                               options={"maxiter": max_iter, "maxfun": solver.max_fun,
                                        "gtol": solver.gtol, "ftol": solver.ftol,
                                        "maxcor": solver.maxcor})
    state.set_params(unflatten(result.x))
    return result
