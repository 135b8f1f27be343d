"""More peers: scikit-learn's MLPClassifier (imported only when its subject is built, never a
dependency of accelnn) and a plain NumPy transcription of the equations, with the interface of
ModelSubject."""

from __future__ import annotations

import warnings

import numpy as np

from .configs import FIT_LR, LR, Config, Gemm, Inputs, gemm_operands
from .peers import BETAS, EPS


class SklearnSubject:
    """The same network as scikit-learn's MLPClassifier (float32 data stays float32 in it):
    predict is `predict`, fit_epoch `fit` with solver="adam" and warm_start (each call trains
    fit_epochs more epochs), train_step one `partial_fit` with plain SGD on the batch. Its
    weights are set from the inputs; its gradients are read off one SGD step of lr 1 from them.
    Its output for two classes is one logistic unit. A two-unit softmax is the same function
    with that unit's weights w1 - w0 (softmax([z0, z1])[1] = sigmoid(z1 - z0)), so those
    configurations take the inputs' weights that way: the probabilities, the loss and the
    hidden layers' gradients are the softmax network's, and the output layer's gradient g for
    w1 - w0 is (-g, g) for (w0, w1). Training moves w1 - w0 by lr * g where the softmax network
    moves it by 2 lr * g, so the weights after steps are not comparable there (`train` gives
    None)."""

    peer = True
    name = "sklearn"
    device = "cpu"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        import sklearn  # noqa: F401

        self.config, self.inputs, self.dtype = config, inputs, np.dtype(dtype)
        self.classes = np.arange(max(config.layers[-1], 2))

    def _estimator(self, X, y, **options):
        """An MLPClassifier of this network, fitted once on (X, y) and then given the inputs'
        weights when their shapes fit."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        config = self.config
        clf = MLPClassifier(hidden_layer_sizes=config.layers[1:-1], activation=config.hidden,
                            alpha=0.0, random_state=0, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(X, y, classes=self.classes)
        weights = [(np.asarray(W), np.asarray(b)) for W, b in self.inputs.weights]
        if self._logistic(clf):
            W, b = weights[-1]
            weights[-1] = W[:, 1:] - W[:, :1], b[1:] - b[:1]
        if [W.shape for W in clf.coefs_] == [W.shape for W, _ in weights]:
            clf.coefs_ = [W.astype(self.dtype) for W, _ in weights]
            clf.intercepts_ = [b.astype(self.dtype) for _, b in weights]
        return clf

    def _logistic(self, clf) -> bool:
        """Whether clf's one logistic output stands for this network's two-unit softmax."""
        return (self.config.output == "softmax" and self.config.layers[-1] == 2
                and clf.coefs_[-1].shape[1] == 1)

    def _sgd(self, lr=LR):
        X = self.inputs.X.astype(self.dtype)
        return self._estimator(X, self.inputs.y, solver="sgd", learning_rate_init=lr,
                               momentum=0.0, batch_size=X.shape[0], shuffle=False), X

    def _matching(self, clf):
        if not self._logistic(clf) and [W.shape for W in clf.coefs_] != [
                np.shape(W) for W, _ in self.inputs.weights]:
            raise ValueError(f"scikit-learn's output layer is {clf.coefs_[-1].shape[1]} "
                             f"unit(s), not {self.config.layers[-1]}: the weights differ")
        return clf

    def synchronize(self) -> None:
        pass

    def phase(self, phase: str):
        from sklearn.exceptions import ConvergenceWarning

        if phase == "predict":
            clf, Xp = self._sgd()[0], self.inputs.Xp.astype(self.dtype)
            return lambda: clf.predict(Xp)
        if phase == "train_step":
            clf, X = self._sgd()
            return lambda: clf.partial_fit(X, self.inputs.y)
        X, y = self.inputs.fit
        clf = self._estimator(X[:self.config.batch], y[:self.config.batch], solver="adam",
                              learning_rate_init=FIT_LR, beta_1=BETAS[0], beta_2=BETAS[1],
                              epsilon=EPS, batch_size=self.config.batch, shuffle=True,
                              max_iter=self.config.fit_epochs, tol=0.0, warm_start=True,
                              n_iter_no_change=10**9)

        def fit():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                return clf.fit(X, y)
        return fit

    def forward(self) -> np.ndarray:
        clf = self._matching(self._sgd()[0])
        P = clf.predict_proba(self.inputs.Xp.astype(self.dtype))
        return P[:, 1:] if self.config.layers[-1] == 1 else P

    def loss_and_grads(self):
        clf, X = self._sgd(lr=1.0)
        self._matching(clf)
        before = [np.array(a, np.float64) for pair in zip(clf.coefs_, clf.intercepts_)
                  for a in pair]
        clf.partial_fit(X, self.inputs.y)
        after = [np.array(a, np.float64) for pair in zip(clf.coefs_, clf.intercepts_)
                 for a in pair]
        grads = [b - a for b, a in zip(before, after)]
        if self._logistic(clf):
            grads[-2:] = [np.concatenate([-g, g], axis=1 if g.ndim == 2 else 0)
                          for g in grads[-2:]]
        return float(clf.loss_), list(zip(grads[0::2], grads[1::2]))

    def train(self, steps: int):
        clf, X = self._sgd()
        if self._logistic(self._matching(clf)):
            return None
        for _ in range(steps):
            clf.partial_fit(X, self.inputs.y)
        return [(np.array(W, np.float64), np.array(b, np.float64))
                for W, b in zip(clf.coefs_, clf.intercepts_)]

    def gemm(self, g: Gemm):
        a, b = (x.astype(self.dtype) for x in gemm_operands(g))
        a, b = (a.T if g.kind == "tn" else a), (b.T if g.kind == "nt" else b)
        return lambda: a @ b


class PlainNumpySubject:
    """The same network as a straightforward NumPy transcription of the classic equations:
    fresh arrays every step, no reused buffers, no in-place work. It is the baseline the NumPy
    backend must match or beat."""

    peer = True
    name = "numpy-plain"
    device = "cpu"

    def __init__(self, config: Config, dtype: str, inputs: Inputs):
        self.config, self.inputs, self.dtype = config, inputs, np.dtype(dtype)
        self.X, self.Xp = inputs.X.astype(self.dtype), inputs.Xp.astype(self.dtype)
        n_out = config.layers[-1]
        Y = np.eye(n_out)[inputs.y] if config.output == "softmax" else inputs.y.reshape(-1, 1)
        self.Y = Y.astype(self.dtype)
        self.lr = self.dtype.type(LR)

    def _params(self):
        return [p.astype(self.dtype) for pair in self.inputs.weights for p in pair]

    def _activations(self, P, X=None):
        As = [self.X if X is None else X]
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

    def _loss_and_grads(self, P, X=None, Y=None):
        As = self._activations(P, X)
        A, Y, m = As[-1], self.Y if Y is None else Y, As[0].shape[0]
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

    def _fit(self, P):
        """Mini-batch Adam over the fit data, transcribed: a fresh gather per batch."""
        X, y = self.inputs.fit
        n_out = self.config.layers[-1]
        Y = (np.eye(n_out)[y] if self.config.output == "softmax" else y.reshape(-1, 1))
        Y = Y.astype(self.dtype)
        m = [np.zeros_like(p) for p in P]
        v = [np.zeros_like(p) for p in P]
        t, rng = [0], np.random.default_rng(0)

        def fit():
            for _ in range(self.config.fit_epochs):
                perm = rng.permutation(X.shape[0])
                for lo in range(0, X.shape[0], self.config.batch):
                    idx = perm[lo:lo + self.config.batch]
                    grads = self._loss_and_grads(P, X[idx], Y[idx])[1]
                    t[0] += 1
                    lr_t = FIT_LR * np.sqrt(1 - BETAS[1] ** t[0]) / (1 - BETAS[0] ** t[0])
                    for p, g, mi, vi in zip(P, grads, m, v):
                        mi[...] = BETAS[0] * mi + (1 - BETAS[0]) * g
                        vi[...] = BETAS[1] * vi + (1 - BETAS[1]) * g * g
                        p -= (lr_t * mi / (np.sqrt(vi) + EPS)).astype(self.dtype)
        return fit

    def phase(self, phase: str):
        P = self._params()
        if phase == "fit_epoch":
            return self._fit(P)
        return (lambda: self._activations(P, self.Xp)[-1]) if phase == "predict" \
            else self._step(P)

    def forward(self) -> np.ndarray:
        return self._activations(self._params(), self.Xp)[-1]

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
