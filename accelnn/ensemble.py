"""`Ensemble`: K MLPs of one architecture, trained together in one pass (accelnn.fit_many) and
predicting by the mean of their outputs.

    ens = accelnn.Ensemble([20, 64, 64, 2], n_models=8, seed=0, bootstrap=True)
    ens.fit(X, y, epochs=20, batch_size=32, optimizer="adam")
    ens.predict_proba(X_new)          # the mean of the members' probabilities
    ens.save("ens.npz"); accelnn.Ensemble.load("ens.npz")

Members differ by their seed (initial weights and mini-batch order), and with `bootstrap`
each also trains on its own bootstrap sample of the rows, drawn afresh at every fit: rows
drawn n times with replacement, given to the member as sample weights (how often each row was
drawn, times any sample_weight), so member k is exactly `MLP.fit(X, y,
sample_weight=counts_k, ...)`. The ensemble's seed fixes the members' seeds and the bootstrap
draws.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from accelnn._version import __version__
from accelnn.files import write_atomic
from accelnn.many import fit_many
from accelnn.model import MLP
from accelnn.sklearn_support import model_bytes, model_from_bytes
from accelnn.weighting import check_sample_weight

FORMAT = "accelnn-ensemble"
FORMAT_VERSION = 1


class Ensemble:
    """`n_models` MLPs of one architecture (MLP's arguments: layer_sizes, hidden_activation,
    output, l2, dtype, backend, classes), trained together and averaged.

    seeds: the members' seeds (n_models is then their number), or None: drawn from
        numpy.random.default_rng(seed). seed: the ensemble's RNG (members' seeds, bootstrap
        draws). bootstrap: each fit trains every member on a bootstrap sample of the rows.

    Raises what MLP raises for its arguments, and ValueError for n_models < 1 or seeds that
    are not distinct integers."""

    def __init__(self, layer_sizes, hidden_activation="relu", output="auto", *,
                 n_models: int = 5, seeds=None, bootstrap: bool = False, l2: float = 0.0,
                 seed: int | None = None, dtype=None, backend=None, classes=None):
        self.rng = np.random.default_rng(seed)
        if seeds is None:
            if not (isinstance(n_models, (int, np.integer)) and not isinstance(n_models, bool)
                    and n_models >= 1):
                raise ValueError(f"n_models must be an integer >= 1, got {n_models!r}")
            seeds = self.rng.integers(2**63, size=int(n_models)).tolist()
        seeds = list(seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
            raise ValueError(f"seeds must be distinct integers, got {seeds!r}")
        self.bootstrap = bool(bootstrap)
        self.members = [MLP(layer_sizes, hidden_activation, output, l2=l2, seed=int(s),
                            dtype=dtype, backend=backend, classes=classes) for s in seeds]

    @property
    def n_models(self) -> int:
        return len(self.members)

    @property
    def classes_(self):
        return self.members[0].classes_

    def fit(self, X, y, *, sample_weight=None, each=None, **options) -> list:
        """Train every member as `MLP.fit(X, y, **options)` would (see accelnn.fit_many, which
        also takes `each`: per-member arguments), with bootstrap samples as sample weights when
        the ensemble bootstraps. Returns the members' Histories. Raises what fit_many raises
        (before anything changes), and the first member's DivergenceError after every member
        has trained (the diverged ones rolled back)."""
        m = len(X) if not hasattr(X, "shape") else X.shape[0]
        w = check_sample_weight(sample_weight, m)
        weights = [w] * self.n_models
        if self.bootstrap:
            draws = [np.bincount(self.rng.integers(0, m, m), minlength=m).astype(np.float64)
                     for _ in self.members]
            weights = [d if w is None else d * w for d in draws]
        each = [{} for _ in self.members] if each is None else [dict(e) for e in each]
        if len(each) != self.n_models:
            raise ValueError(f"each has {len(each)} entries for {self.n_models} models")
        for e, wk in zip(each, weights):
            e.setdefault("sample_weight", wk)
        histories = fit_many(self.members, X, y, each=each, **options)
        failed = [h.error for h in histories if h.error is not None]
        if failed:
            raise failed[0]
        return histories

    # ------------------------------------------------------------------ predictions
    def forward(self, X):
        """The mean of the members' output activations A[L] (m, nL), an array of the
        members' backend."""
        return sum(model.forward(X) for model in self.members) / self.n_models

    def predict_proba(self, X):
        """The mean of the members' class probabilities (m, n_classes); RuntimeError for a
        regressor, as MLP's."""
        return sum(model.predict_proba(X) for model in self.members) / self.n_models

    def predict(self, X):
        """The ensemble's decision from the mean of the members' outputs: the class of the
        largest mean probability (labels from classes_), for multi-label outputs the labels
        whose mean probability exceeds 1/2 (m, nL), for a regressor the mean prediction ((m,)
        for one output)."""
        first = self.members[0]
        head = first.head
        if head is None or head.name == "identity":
            return sum(model.predict(X) for model in self.members) / self.n_models
        P = self.forward(X)
        if head.name == "sigmoid" and P.shape[1] > 1:
            return (P > 0.5).astype(np.intp)
        idx = (P[:, 0] > 0.5).astype(np.intp) if P.shape[1] == 1 else \
            first.backend.xp.argmax(P, axis=1)
        classes = first.classes_
        if classes is None:
            classes = np.arange(max(P.shape[1], 2))
        if classes.dtype.kind in "biuf":
            return first.backend.asarray(classes)[idx]
        return classes[first.backend.to_numpy(idx)]

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write the ensemble to one .npz file, atomically (accelnn.files.write_atomic): a
        JSON header (format, version, bootstrap, the ensemble RNG's state) and every member as
        its MLP.save file's bytes. It loads without pickle."""
        header = {"format": FORMAT, "format_version": FORMAT_VERSION,
                  "accelnn_version": __version__, "n_models": self.n_models,
                  "bootstrap": self.bootstrap, "rng_state": self.rng.bit_generator.state}
        arrays = {"header": np.array(json.dumps(header))}
        for k, model in enumerate(self.members):
            arrays[f"member{k}"] = np.frombuffer(model_bytes(model), dtype=np.uint8)
        write_atomic(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path, *, backend=None) -> Ensemble:
        """Read an ensemble written by `save`, its members on `backend` (default: the current
        selection). ValueError names the file and what is wrong: not an ensemble file, another
        format version, a bad header, a member that MLP.load refuses (accelnn.io checks
        it), or members of different architectures."""
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            header = json.loads(str(arrays["header"]))
        except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as exc:
            raise ValueError(f"{path}: not a readable accelnn ensemble file "
                             f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"{path}: not an accelnn ensemble file")
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: ensemble format version "
                             f"{header.get('format_version')!r} is not supported")
        n = header.get("n_models")
        names = [f"member{k}" for k in range(n)] if isinstance(n, int) and n >= 1 else None
        if names is None or sorted(arrays) != sorted(["header", *names]):
            raise ValueError(f"{path}: the members do not match n_models={n!r}")
        members = []
        for name in names:
            if arrays[name].dtype != np.uint8 or arrays[name].ndim != 1:
                raise ValueError(f"{path}: {name} is not a model file's bytes")
            try:
                members.append(model_from_bytes(arrays[name].tobytes(), backend))
            except ValueError as exc:
                raise ValueError(f"{path}: {name}: {exc}") from exc
        configs = [m.get_config() for m in members]
        if any(c != configs[0] for c in configs[1:]):
            raise ValueError(f"{path}: the members are of different architectures")
        ens = cls.__new__(cls)
        ens.rng = np.random.default_rng()
        try:
            ens.rng.bit_generator.state = header["rng_state"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: bad rng_state in the header") from exc
        ens.bootstrap = bool(header.get("bootstrap"))
        ens.members = members
        return ens

    def __repr__(self) -> str:
        return (f"Ensemble({self.n_models} x {self.members[0]!r}"
                f"{', bootstrap' if self.bootstrap else ''})")
