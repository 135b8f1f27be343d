"""solver="lbfgs": accelnn's MLPClassifier beside scikit-learn's on small data sets.

    python bench/lbfgs_vs_sklearn.py [--backend numpy] [--seeds 0 1 2] [--blas-threads 1]

For scikit-learn's breast-cancer, wine and digits sets: one fixed stratified train/test split
(25% held out, random_state=0), StandardScaler fitted on the training part, then
MLPClassifier(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=200, random_state=seed)
from each library; prints test accuracy, fit time and iterations per set and seed, and the
mean accuracy over the seeds. The two start from different random weights (scikit-learn
draws biases too, accelnn starts them at zero), so single seeds may land in different
minima; the means compare the solvers. Exit status 1 when a mean accuracy differs by more
than one point. Not a test: it needs scikit-learn and takes a few seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.preprocessing import StandardScaler

from accelnn.sklearn import MLPClassifier

SETS = {"breast_cancer": load_breast_cancer, "wine": load_wine, "digits": load_digits}
PARAMS = {"hidden_layer_sizes": (100,), "solver": "lbfgs", "max_iter": 200}


def _split(loader):
    X, y = loader(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def _fit(est, Xtr, ytr, Xte, yte):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        est.fit(Xtr, ytr)
        seconds = time.perf_counter() - t0
    return est.score(Xte, yte), seconds, est.n_iter_


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy", help="accelnn backend (default: numpy)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--blas-threads", type=int, default=None,
                   help="limit BLAS threads (threadpoolctl) for both libraries")
    args = p.parse_args(argv)
    limit = contextlib.nullcontext()
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(args.blas_threads)
    print(f"MLPClassifier({', '.join(f'{k}={v!r}' for k, v in PARAMS.items())}), accelnn "
          f"backend={args.backend}, dtype float64, seeds {args.seeds}, BLAS threads "
          f"{args.blas_threads or 'default'}")
    print(f"{'data set':14} {'seed':>4}  {'accelnn acc':>11} {'fit s':>7} {'iter':>4}  "
          f"{'sklearn acc':>11} {'fit s':>7} {'iter':>4}")
    worst = 0.0
    with limit:
        for name, loader in SETS.items():
            Xtr, Xte, ytr, yte = _split(loader)
            ours, theirs = [], []
            for seed in args.seeds:
                a = _fit(MLPClassifier(random_state=seed, backend=args.backend, **PARAMS),
                         Xtr, ytr, Xte, yte)
                b = _fit(SkMLPClassifier(random_state=seed, **PARAMS), Xtr, ytr, Xte, yte)
                ours.append(a)
                theirs.append(b)
                print(f"{name:14} {seed:>4}  {a[0]:>11.2%} {a[1]:>7.3f} {a[2]:>4}  "
                      f"{b[0]:>11.2%} {b[1]:>7.3f} {b[2]:>4}")
            acc_a = np.mean([r[0] for r in ours])
            acc_b = np.mean([r[0] for r in theirs])
            worst = max(worst, abs(acc_a - acc_b))
            print(f"{name:14} mean  {acc_a:>11.2%} {np.mean([r[1] for r in ours]):>7.3f} "
                  f"{'':>4}  {acc_b:>11.2%} {np.mean([r[1] for r in theirs]):>7.3f}   "
                  f"(difference {100 * (acc_a - acc_b):+.2f} points; test rows: {len(yte)})")
    ok = worst <= 0.01
    print(f"largest difference of the mean accuracies: {100 * worst:.2f} points "
          f"({'within' if ok else 'beyond'} 1 point)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
