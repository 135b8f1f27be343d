"""Peers: the same network in PyTorch and JAX (scikit-learn and plain NumPy: peers_more), each
with the interface of ModelSubject (phase, synchronize, forward, loss_and_grads, train, gemm),
run beside the accelnn backends for comparison, each written the way its users would write it
for speed: predict gives class labels from the logits' argmax (no softmax); fit_epoch is
mini-batch Adam over the data set with a permutation per epoch (JAX: one jitted step per batch
with the gather inside, the parameters donated, dispatched without waiting, so the next step
is queued while one runs; PyTorch: eager, torch.optim.Adam). torch and jax are imported only
when their subject is built; they are never dependencies of accelnn."""

from __future__ import annotations

import numpy as np

from .configs import FIT_LR, LR, Config, Gemm, Inputs, gemm_operands

BETAS, EPS = (0.9, 0.999), 1e-8  # Adam's defaults, in every peer


def batches(n: int, batch: int, perm):
    """(indices, share of the rows) of each mini-batch of the permutation `perm` of n rows."""
    return [(perm[lo:lo + batch], min(batch, n - lo) / n) for lo in range(0, n, batch)]


class TorchSubject:
    """The same network in eager PyTorch: torch.nn.functional, autograd, torch.optim. On the
    CPU each call runs on one thread when the phase's largest GEMM is small (as the numba
    backend's BLAS policy decides, accelnn.machine.BLAS_THREADS), else on torch's default
    threads: measured here, torch's default two threads made the small networks' steps 10 to
    100 times slower beside other libraries' spinning threads in one process."""

    peer = True
    name = "torch"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        import torch

        self.torch, self.config = torch, config
        self.dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.Xp = self._tensor_of(inputs.Xp, torch, dtype)
        self.default_threads = torch.get_num_threads()
        self.device = str(self.dev) if self.dev.type == "cuda" else \
            f"cpu, {self.default_threads} threads by default"
        self.dtype = getattr(torch, dtype)
        self.inputs = inputs
        self.X, self.Y = self._tensor(inputs.X), self._targets(inputs.y)
        self.act = getattr(torch, config.hidden)

    def _tensor(self, a):
        return self.torch.tensor(a, dtype=self.dtype, device=self.dev)  # a copy

    def _tensor_of(self, a, torch, dtype):
        return torch.tensor(a, dtype=getattr(torch, dtype), device=self.dev)

    def _targets(self, y):
        if self.config.output == "softmax":
            return self.torch.tensor(y, dtype=self.torch.long, device=self.dev)
        return self._tensor(np.reshape(y, (-1, 1)))

    def _params(self):
        return [self._tensor(p).requires_grad_() for pair in self.inputs.weights for p in pair]

    def _logits(self, params, X=None):
        A = self.X if X is None else X
        for l in range(0, len(params), 2):
            Z = self.torch.addmm(params[l + 1], A, params[l])
            A = self.act(Z)
        return Z

    def _loss(self, Z, Y=None):
        F, Y = self.torch.nn.functional, self.Y if Y is None else Y
        if self.config.output == "softmax":
            return F.cross_entropy(Z, Y)
        return F.binary_cross_entropy_with_logits(Z, Y, reduction="sum") / Z.shape[0]

    def _output(self, Z):
        return self.torch.softmax(Z, 1) if self.config.output == "softmax" else \
            self.torch.sigmoid(Z)

    def synchronize(self) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def phase(self, phase: str):
        from accelnn.machine import BLAS_THREADS

        params = self._params()
        if phase == "predict":
            def call():
                with self.torch.inference_mode():
                    Z = self._logits(params, self.Xp)
                    return Z.argmax(1) if Z.shape[1] > 1 else Z[:, 0] > 0
        elif phase == "fit_epoch":
            call = self._fit(params)
        else:
            call = self._sgd_step(params)
        threads = 1 if BLAS_THREADS.for_gemm(self.config.largest_gemm(phase)) == 1 \
            else self.default_threads

        def run():
            if self.dev.type == "cpu":
                self.torch.set_num_threads(threads)
            return call()
        return run

    def _fit(self, params):
        torch, config = self.torch, self.config
        X, y = self.inputs.fit
        X, Y = torch.from_numpy(np.ascontiguousarray(X)).to(self.dev), self._targets(y)
        opt = torch.optim.Adam(params, lr=FIT_LR, betas=BETAS, eps=EPS)
        gen = torch.Generator().manual_seed(0)

        def fit():
            for _ in range(config.fit_epochs):
                total = 0.0
                perm = torch.randperm(X.shape[0], generator=gen).to(self.dev)
                for idx, share in batches(X.shape[0], config.batch, perm):
                    opt.zero_grad(set_to_none=True)
                    loss = self._loss(self._logits(params, X[idx]), Y[idx])
                    loss.backward()
                    opt.step()
                    total = total + loss.detach() * share
            return total
        return fit

    def _sgd_step(self, params):
        opt = self.torch.optim.SGD(params, lr=LR)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = self._loss(self._logits(params))
            loss.backward()
            opt.step()
            return loss
        return step

    def _host(self, tensors):
        host = [t.detach().cpu().double().numpy() for t in tensors]
        return list(zip(host[0::2], host[1::2]))

    def forward(self) -> np.ndarray:
        with self.torch.inference_mode():
            Z = self._logits(self._params(), self.Xp)
            return self._output(Z).cpu().double().numpy()

    def loss_and_grads(self):
        params = self._params()
        loss = self._loss(self._logits(params))
        return float(loss.detach()), self._host(self.torch.autograd.grad(loss, params))

    def train(self, steps: int):
        params = self._params()
        step = self._sgd_step(params)
        for _ in range(steps):
            step()
        return self._host(params)

    def gemm(self, g: Gemm):
        a, b = (self._tensor(x) for x in gemm_operands(g))
        a, b = (a.T if g.kind == "tn" else a), (b.T if g.kind == "nt" else b)
        out = self.torch.empty((g.m, g.n), dtype=self.dtype, device=self.dev)
        return lambda: self.torch.matmul(a, b, out=out)


class JaxSubject:
    """The same network in JAX: jax.jit of the forward pass and of a value_and_grad SGD step."""

    peer = True
    name = "jax"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 arrays; float32 ones are unchanged
        import jax.numpy as jnp

        self.jax, self.jnp, self.inputs = jax, jnp, inputs
        self.dtype = jnp.dtype(dtype)
        self.device = str(jax.devices()[0])
        self.X, self.Xp = jnp.asarray(inputs.X, self.dtype), jnp.asarray(inputs.Xp, self.dtype)
        self.config = config
        Y = self._targets(inputs.y)
        act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[config.hidden]
        softmax = config.output == "softmax"

        def logits(params, X):
            A = X
            for W, b in params:
                Z = A @ W + b
                A = act(Z)
            return Z

        def loss_on(params, X, Y):
            Z = logits(params, X)
            if softmax:
                return -(Y * jax.nn.log_softmax(Z)).sum() / Z.shape[0]
            return (jnp.logaddexp(0.0, Z) - Z * Y).sum() / Z.shape[0]

        def loss(params):
            return loss_on(params, self.X, Y)

        def step(params):
            value, grads = jax.value_and_grad(loss)(params)
            return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

        def adam_step(state, X, Y, idx, share):
            """One Adam step on the rows idx of X, Y; the loss times its share added up."""
            params, m, v, t, total = state
            value, g = jax.value_and_grad(loss_on)(params, X[idx], Y[idx])
            t = t + 1
            m = jax.tree_util.tree_map(lambda m, g: BETAS[0] * m + (1 - BETAS[0]) * g, m, g)
            v = jax.tree_util.tree_map(lambda v, g: BETAS[1] * v + (1 - BETAS[1]) * g * g, v, g)
            lr_t = FIT_LR * jnp.sqrt(1 - BETAS[1] ** t) / (1 - BETAS[0] ** t)
            params = jax.tree_util.tree_map(
                lambda p, m, v: p - (lr_t * m / (jnp.sqrt(v) + EPS)).astype(p.dtype),
                params, m, v)
            return params, m, v, t, total + value * share

        self._output = jax.jit(lambda p, X: (jax.nn.softmax if softmax else jax.nn.sigmoid)(
            logits(p, X)))
        self._labels = jax.jit(lambda p, X: jnp.argmax(logits(p, X), 1) if softmax
                               else logits(p, X) > 0)
        self._adam = jax.jit(adam_step, donate_argnums=(0,))
        self._loss_and_grads = jax.jit(jax.value_and_grad(loss))
        self._step = jax.jit(step)
        self._last = None

    def _params(self):
        return [(self.jnp.asarray(W, self.dtype), self.jnp.asarray(b, self.dtype))
                for W, b in self.inputs.weights]

    def _targets(self, y):
        n_out = self.config.layers[-1]
        Y = np.eye(n_out)[y] if self.config.output == "softmax" else np.reshape(y, (-1, 1))
        return self.jnp.asarray(Y, self.dtype)

    def _fit(self):
        jnp, config = self.jnp, self.config
        X, y = self.inputs.fit
        X, Y = jnp.asarray(X, self.dtype), self._targets(y)
        params = self._params()
        zeros = [(jnp.zeros_like(W), jnp.zeros_like(b)) for W, b in params]
        state = [(params, zeros, [(jnp.zeros_like(W), jnp.zeros_like(b)) for W, b in params],
                  jnp.zeros((), self.dtype), jnp.zeros((), self.dtype))]
        rng = np.random.default_rng(0)

        def fit():
            for _ in range(config.fit_epochs):
                params, m, v, t, _ = state[0]
                state[0] = (params, m, v, t, jnp.zeros((), self.dtype))
                for idx, share in batches(X.shape[0], config.batch, rng.permutation(X.shape[0])):
                    state[0] = self._adam(state[0], X, Y, idx, share)
            self._last = state[0][4]
            return self._last
        return fit

    def synchronize(self) -> None:
        if self._last is not None:
            self.jax.block_until_ready(self._last)

    def phase(self, phase: str):
        params = [self._params()]
        if phase == "predict":
            def predict():
                self._last = self._labels(params[0], self.Xp)
            return predict
        if phase == "fit_epoch":
            return self._fit()

        def step():
            loss, params[0] = self._step(params[0])
            self._last = params[0]
            return loss
        return step

    def _host(self, params):
        return [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params]

    def forward(self) -> np.ndarray:
        return np.asarray(self._output(self._params(), self.Xp), np.float64)

    def loss_and_grads(self):
        loss, grads = self._loss_and_grads(self._params())
        return float(loss), self._host(grads)

    def train(self, steps: int):
        params = self._params()
        for _ in range(steps):
            params = self._step(params)[1]
        return self._host(params)

    def gemm(self, g: Gemm):
        a, b = (self.jnp.asarray(x, self.dtype) for x in gemm_operands(g))
        f = self.jax.jit(lambda a, b: (a.T if g.kind == "tn" else a) @
                         (b.T if g.kind == "nt" else b))

        def call():
            self._last = f(a, b)
        return call
