"""accelnn: the classic MLP math (forward propagation, backprop, gradient descent) written once,
run fast on NumPy, Numba or CuPy. Pick a backend with ACCELNN_BACKEND or accelnn.set_backend."""

from accelnn import datasets, schedules
from accelnn._version import __version__
from accelnn.backends import (
    Backend,
    BackendError,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)
from accelnn.callbacks import Callback, EarlyStopping, History
from accelnn.ensemble import Ensemble
from accelnn.gradcheck import gradcheck
from accelnn.lbfgs import LBFGS
from accelnn.many import fit_many
from accelnn.model import MLP
from accelnn.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop
from accelnn.training import DivergenceError

__all__ = [
    "MLP", "History", "DivergenceError", "EarlyStopping", "Callback", "LBFGS", "gradcheck",
    "fit_many", "Ensemble", "datasets", "schedules",
    "Backend", "BackendError", "get_backend", "set_backend", "use_backend", "available_backends",
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "__version__",
]
