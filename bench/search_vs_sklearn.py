"""A hyper-parameter search of the tabular network: accelnn's MLPSearchCV beside scikit-learn's
GridSearchCV(n_jobs=2) over scikit-learn's own MLPClassifier, with the same grid.

    python bench/search_vs_sklearn.py [--dtype float64] [--epochs 20] [--skip-accelnn-grid]

Data: scikit-learn's make_classification, 5,000 rows, 20 features (10 informative), two
classes, random_state=0. Network: hidden_layer_sizes=(64, 64), relu, Adam, batch_size=32,
max_iter=20 (epochs), everything else at its default (tol, n_iter_no_change, shuffle). Grid:
learning_rate_init [1e-3, 3e-3] x alpha [1e-4, 1e-3, 1e-2] x random_state [0, 1, 2, 3]:
24 candidates, 5-fold stratified CV (120 fits) and the refit of the best. Rows:

    accelnn MLPSearchCV        the 120 fits in one pass (numba backend, n_jobs threads)
    accelnn GridSearchCV       GridSearchCV(n_jobs) over accelnn's own MLPClassifier: the
                               same fits one by one, whose cv_results_ MLPSearchCV equals
    scikit-learn GridSearchCV  GridSearchCV(n_jobs) over sklearn.neural_network's

Prints each one's wall time, best mean CV accuracy and best parameters. The two libraries
draw different initial weights (accelnn: He-uniform weights and zero biases from its own
RNG), so their scores differ by seed; the best scores compare the searches. Not a test: it
takes minutes.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

from accelnn.sklearn import MLPClassifier, MLPSearchCV

GRID = {"learning_rate_init": [1e-3, 3e-3], "alpha": [1e-4, 1e-3, 1e-2],
        "random_state": [0, 1, 2, 3]}


def _timed(search, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        search.fit(X, y)
        return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float64", help="accelnn's dtype (default: float64, "
                                                      "scikit-learn's precision)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--skip-accelnn-grid", action="store_true",
                   help="leave out GridSearchCV over accelnn's estimator")
    args = p.parse_args(argv)
    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10,
                               random_state=0)
    common = dict(hidden_layer_sizes=(64, 64), batch_size=32, max_iter=args.epochs)
    ours = MLPClassifier(**common, backend="numba", dtype=args.dtype)
    rows = []
    warm = MLPSearchCV(clone(ours).set_params(max_iter=1), {"random_state": [0, 1]}, cv=2)
    _timed(warm, X[:200], y[:200])  # numba's kernels loaded once, outside the timings
    searches = [("accelnn MLPSearchCV", MLPSearchCV(ours, GRID, cv=5, n_jobs=args.n_jobs))]
    if not args.skip_accelnn_grid:
        searches.append(("accelnn GridSearchCV",
                         GridSearchCV(ours, GRID, cv=5, n_jobs=args.n_jobs)))
    searches.append(("scikit-learn GridSearchCV",
                     GridSearchCV(SkMLPClassifier(**common), GRID, cv=5, n_jobs=args.n_jobs)))
    for name, search in searches:
        seconds = _timed(search, X, y)
        rows.append((name, seconds, search.best_score_, search.best_params_))
        print(f"{name:<27} {seconds:8.1f} s   best {search.best_score_:.4f}   "
              f"{search.best_params_}", flush=True)
    if not args.skip_accelnn_grid:
        same = np.array_equal(searches[0][1].cv_results_["mean_test_score"],
                              searches[1][1].cv_results_["mean_test_score"])
        print(f"MLPSearchCV's mean_test_score equal to GridSearchCV's over accelnn: {same}")
    base = rows[-1][1]
    for name, seconds, _, _ in rows[:-1]:
        print(f"{name}: {base / seconds:.2f}x the speed of scikit-learn's GridSearchCV")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
