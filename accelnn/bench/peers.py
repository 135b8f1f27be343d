"""Peers: the same network in PyTorch, JAX and plain NumPy, each with the interface of
ModelSubject (phase, synchronize, forward, loss_and_grads, train, gemm), run beside the accelnn
backends for comparison. torch and jax are imported only when their subject is built."""

from __future__ import annotations

import numpy as np

from .configs import LR, Config, Gemm, Inputs, gemm_operands


class TorchSubject:
    """The same network in eager PyTorch: torch.nn.functional, autograd, torch.optim.SGD."""

    peer = True
    name = "torch"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        import torch

        self.torch, self.config = torch, config
        self.dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.device = str(self.dev) if self.dev.type == "cuda" else \
            f"cpu, {torch.get_num_threads()} threads"
        self.dtype = getattr(torch, dtype)
        self.inputs = inputs
        self.X = self._tensor(inputs.X)
        if config.output == "softmax":
            self.Y = torch.tensor(inputs.y, dtype=torch.long, device=self.dev)
        else:
            self.Y = self._tensor(inputs.y.reshape(-1, 1))
        self.act = getattr(torch, config.hidden)

    def _tensor(self, a):
        return self.torch.tensor(a, dtype=self.dtype, device=self.dev)  # a copy

    def _params(self):
        return [self._tensor(p).requires_grad_() for pair in self.inputs.weights for p in pair]

    def _logits(self, params):
        A = self.X
        for l in range(0, len(params), 2):
            Z = self.torch.addmm(params[l + 1], A, params[l])
            A = self.act(Z)
        return Z

    def _loss(self, Z):
        F = self.torch.nn.functional
        if self.config.output == "softmax":
            return F.cross_entropy(Z, self.Y)
        return F.binary_cross_entropy_with_logits(Z, self.Y, reduction="sum") / Z.shape[0]

    def _output(self, Z):
        return self.torch.softmax(Z, 1) if self.config.output == "softmax" else \
            self.torch.sigmoid(Z)

    def synchronize(self) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def phase(self, phase: str):
        params = self._params()
        if phase == "predict":
            def predict():
                with self.torch.inference_mode():
                    return self._output(self._logits(params))
            return predict
        return self._sgd_step(params)

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
            return self._output(self._logits(self._params())).cpu().double().numpy()

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
        self.X = jnp.asarray(inputs.X, self.dtype)
        n_out = config.layers[-1]
        Y = np.eye(n_out)[inputs.y] if config.output == "softmax" else inputs.y.reshape(-1, 1)
        Y = jnp.asarray(Y, self.dtype)
        act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[config.hidden]
        softmax = config.output == "softmax"

        def logits(params, X):
            A = X
            for W, b in params:
                Z = A @ W + b
                A = act(Z)
            return Z

        def loss(params):
            Z = logits(params, self.X)
            if softmax:
                return -(Y * jax.nn.log_softmax(Z)).sum() / Z.shape[0]
            return (jnp.logaddexp(0.0, Z) - Z * Y).sum() / Z.shape[0]

        def step(params):
            value, grads = jax.value_and_grad(loss)(params)
            return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

        self._output = jax.jit(lambda p, X: (jax.nn.softmax if softmax else jax.nn.sigmoid)(
            logits(p, X)))
        self._loss_and_grads = jax.jit(jax.value_and_grad(loss))
        self._step = jax.jit(step)
        self._last = None

    def _params(self):
        return [(self.jnp.asarray(W, self.dtype), self.jnp.asarray(b, self.dtype))
                for W, b in self.inputs.weights]

    def synchronize(self) -> None:
        if self._last is not None:
            self.jax.block_until_ready(self._last)

    def phase(self, phase: str):
        params = [self._params()]
        if phase == "predict":
            def predict():
                self._last = self._output(params[0], self.X)
            return predict

        def step():
            loss, params[0] = self._step(params[0])
            self._last = params[0]
            return loss
        return step

    def _host(self, params):
        return [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params]

    def forward(self) -> np.ndarray:
        return np.asarray(self._output(self._params(), self.X), np.float64)

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


class PlainNumpySubject:
    """The same network as a straightforward NumPy transcription of the classic equations:
    fresh arrays every step, no reused buffers, no in-place work. It is the baseline the NumPy
    backend must match or beat."""

    peer = True
    name = "numpy-plain"
    device = "cpu"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        self.config, self.inputs, self.dtype = config, inputs, np.dtype(dtype)
        self.X = inputs.X.astype(self.dtype)
        n_out = config.layers[-1]
        Y = np.eye(n_out)[inputs.y] if config.output == "softmax" else inputs.y.reshape(-1, 1)
        self.Y = Y.astype(self.dtype)
        self.lr = self.dtype.type(LR)

    def _params(self):
        return [p.astype(self.dtype) for pair in self.inputs.weights for p in pair]

    def _activations(self, P):
        As = [self.X]
        for l in range(0, len(P), 2):
            Z = As[-1] @ P[l] + P[l + 1]
            if l + 2 < len(P):
                As.append(np.tanh(Z) if self.config.hidden == "tanh" else np.maximum(Z, 0))
            elif self.config.output == "softmax":
                E = np.exp(Z - Z.max(axis=1, keepdims=True))
                As.append(E / E.sum(axis=1, keepdims=True))
            else:
                As.append(1 / (1 + np.exp(-Z)))
        return As

    def _loss_and_grads(self, P):
        As = self._activations(P)
        A, Y, m = As[-1], self.Y, self.X.shape[0]
        if self.config.output == "softmax":
            loss = -np.sum(Y * np.log(A)) / m
        else:
            loss = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
        dZ = (A - Y) / m
        grads = [None] * len(P)
        for l in range(len(P) - 2, -1, -2):
            A_prev = As[l // 2]
            grads[l], grads[l + 1] = A_prev.T @ dZ, dZ.sum(axis=0)
            if l:
                dg = 1 - A_prev**2 if self.config.hidden == "tanh" else A_prev > 0
                dZ = (dZ @ P[l].T) * dg
        return loss, grads

    def _step(self, P):
        def step():
            loss, grads = self._loss_and_grads(P)
            for p, g in zip(P, grads):
                p -= self.lr * g
            return loss
        return step

    def synchronize(self) -> None:
        pass

    def phase(self, phase: str):
        P = self._params()
        return (lambda: self._activations(P)[-1]) if phase == "predict" else self._step(P)

    def forward(self) -> np.ndarray:
        return self._activations(self._params())[-1]

    def loss_and_grads(self):
        loss, grads = self._loss_and_grads(self._params())
        return float(loss), list(zip(grads[0::2], grads[1::2]))

    def train(self, steps: int):
        P = self._params()
        step = self._step(P)
        for _ in range(steps):
            step()
        return list(zip(P[0::2], P[1::2]))

    def gemm(self, g: Gemm):
        a, b = (x.astype(self.dtype) for x in gemm_operands(g))
        a, b = (a.T if g.kind == "tn" else a), (b.T if g.kind == "nt" else b)
        return lambda: a @ b
