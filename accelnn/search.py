"""`MLPSearchCV`: scikit-learn's GridSearchCV for accelnn's estimators, with the fits of every
candidate and fold that share a network trained together in one pass (accelnn.fit_many).

    from accelnn.sklearn import MLPClassifier, MLPSearchCV
    search = MLPSearchCV(MLPClassifier(hidden_layer_sizes=(64, 64), batch_size=32),
                         {"learning_rate_init": [1e-3, 3e-3], "alpha": [1e-4, 1e-3, 1e-2],
                          "random_state": [0, 1, 2, 3]}, cv=5).fit(X, y)

It takes GridSearchCV's parameters and gives its attributes (cv_results_, best_params_,
best_score_, best_index_, best_estimator_, refit_time_, scorer_, n_splits_, multimetric_),
scored the same way: each (candidate, fold) fit is `clone(estimator).set_params(**params)`
fitted on the fold's training rows, so its scores, and every cv_results_ entry but the
times, equal GridSearchCV's over the same estimator (tests/test_search.py). Each fit is
prepared by the estimator itself (`fit_plan`: its checks, its model, its early-stopping
split and scikit-learn's stopping rule), the prepared models are grouped by what one pass
needs to share (layer sizes, activation, output, dtype, backend, update rule: a grid over
`hidden_layer_sizes` or `solver` makes several groups) and each group trains in one
fit_many; L-BFGS fits, which fit_many does not take, run one by one. A fit's `fit_time` is
its share of its group's pass plus its own preparation.

n_jobs sets numba's thread count for the search (the one pass spreads its models over the
threads); pre_dispatch is accepted and unused. fit(X, y, **params) routes params as
GridSearchCV does (groups to the splitter; sample_weight to the fits and, when the scorer
takes it, to the scorer), array parameters split with the rows.

Needs scikit-learn >= 1.6 (pip install 'accelnn[sklearn]'); accelnn.sklearn exports it.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import Counter

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import get_scorer
from sklearn.model_selection import ParameterGrid, check_cv
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import _safe_indexing, indexable

from accelnn.lbfgs import LBFGS
from accelnn.many import fit_many


class MLPSearchCV(BaseSearchCV):
    """Exhaustive search over `param_grid` (a dict or a list of dicts, as GridSearchCV's) for
    an accelnn estimator (MLPClassifier, MLPRegressor: anything with `fit_plan`), every fit
    of a group of candidates and folds trained in one pass. See the module docstring; the
    parameters are GridSearchCV's. Raises TypeError for an estimator without fit_plan."""

    def __init__(self, estimator, param_grid, *, scoring=None, n_jobs=None, refit=True,
                 cv=None, verbose=0, pre_dispatch="2*n_jobs", error_score=np.nan,
                 return_train_score=False):
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit,
                         cv=cv, verbose=verbose, pre_dispatch=pre_dispatch,
                         error_score=error_score, return_train_score=return_train_score)
        self.param_grid = param_grid

    def fit(self, X, y=None, **params):
        """Fit every candidate on every fold and score it, then refit the best on all of
        (X, y), as GridSearchCV.fit(X, y, **params) does. Raises what GridSearchCV raises:
        ValueError when every fit failed, the fit's own error with error_score="raise"."""
        if not hasattr(self.estimator, "fit_plan"):
            raise TypeError(f"MLPSearchCV searches accelnn's estimators (with fit_plan), not "
                            f"{type(self.estimator).__name__}; use GridSearchCV")
        scorers, refit_metric = self._get_scorers()
        X, y = indexable(X, y)
        routed = self._get_routed_params_for_fit(params)
        fit_params, score_params = routed.estimator.fit, routed.scorer.score
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        splits = list(cv.split(X, y, **routed.splitter.split))
        self.n_splits_ = len(splits)
        candidates = list(ParameterGrid(self.param_grid))
        if self.verbose > 0:
            print(f"Fitting {len(splits)} folds for each of {len(candidates)} candidates, "
                  f"totalling {len(splits) * len(candidates)} fits")
        base = clone(self.estimator)
        with _threads(self.n_jobs):
            fitted, out = self._fit_all(base, candidates, splits, X, y, fit_params)
        for (c, s), result in zip(np.ndindex(len(candidates), len(splits)), out):
            self._score(fitted.get((c, s)), result, scorers, X, y, splits[s], score_params)
        _fit_failures(out, self.error_score)
        first = next(r["test_scores"] for r in out)
        self.multimetric_ = isinstance(first, dict)
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(first)
            refit_metric = self.refit
        results = self._format_results(candidates, len(splits), out)
        if self.refit or not self.multimetric_:
            self.best_index_ = self._select_best_index(self.refit, refit_metric, results)
            if not callable(self.refit):
                self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
            self.best_params_ = results["params"][self.best_index_]
        if self.refit:
            self.best_estimator_ = clone(base).set_params(**clone(self.best_params_,
                                                                  safe=False))
            start = time.time()
            self.best_estimator_.fit(X, y, **fit_params)
            self.refit_time_ = time.time() - start
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_
        self.scorer_ = _named_scorers(self.scoring) if self.multimetric_ and not callable(
            self.scoring) else scorers
        self.cv_results_ = results
        return self

    # ------------------------------------------------------------------ the fits
    def _fit_all(self, base, candidates, splits, X, y, params):
        """Every (candidate, split) fit: {(c, s): fitted estimator} and one result dict per
        fit in GridSearchCV's order (fit_error, fit_time; the scores come later)."""
        folds = [(_safe_indexing(X, train), _safe_indexing(y, train),
                  {k: _split_param(v, train, len(X)) for k, v in params.items()})
                 for train, _ in splits]
        out = [{"fit_error": None, "fit_time": 0.0, "n_test_samples": len(test)}
               for _ in candidates for _, test in splits]
        plans, fitted = {}, {}
        for c, s in np.ndindex(len(candidates), len(splits)):
            start = time.perf_counter()
            est = clone(base).set_params(**clone(candidates[c], safe=False))
            Xf, yf, fit_params = folds[s]
            try:
                plans[(c, s)] = (est, est.fit_plan(Xf, yf, **fit_params))
            except Exception as exc:
                self._failed(out[c * len(splits) + s], exc)
            out[c * len(splits) + s]["fit_time"] += time.perf_counter() - start
        by_group: dict = {}
        for key, (_, plan) in plans.items():
            by_group.setdefault(_group(plan), []).append(key)
        for group, keys in by_group.items():
            start = time.perf_counter()
            if group is None:  # L-BFGS: one by one, as the estimator's fit
                histories = [_fit_alone(plans[key][1]) for key in keys]
            else:
                histories = _fit_together([plans[key][1] for key in keys])
            share = (time.perf_counter() - start) / len(keys)
            for key, history in zip(keys, histories):
                result = out[key[0] * len(splits) + key[1]]
                start = time.perf_counter()
                est, plan = plans[key]
                if isinstance(history, BaseException):
                    plan.fail()
                    self._failed(result, history)
                else:
                    plan.finish(history)
                    fitted[key] = est
                result["fit_time"] += share + time.perf_counter() - start
        return fitted, out

    def _failed(self, result: dict, exc: BaseException) -> None:
        """Record a failed fit as GridSearchCV does (or raise it with error_score='raise')."""
        if self.error_score == "raise":
            raise exc
        result["fit_error"] = f"{type(exc).__name__}: {exc}"

    def _score(self, est, result: dict, scorers, X, y, split, score_params: dict) -> None:
        """Test (and train) scores of a fitted estimator into its result (the scorers given
        their rows of score_params: sample_weight), error_score for a failed fit or a failed
        scoring, as GridSearchCV scores them."""
        train, test = split
        start = time.perf_counter()
        parts = [("test_scores", test)] + ([("train_scores", train)]
                                           if self.return_train_score else [])
        for name, rows in parts:
            if est is None:
                result[name] = _error_scores(self.scoring, self.error_score)
                continue
            try:
                kwargs = {k: _split_param(v, rows, len(X)) for k, v in score_params.items()}
                result[name] = scorers(est, _safe_indexing(X, rows), _safe_indexing(y, rows),
                                       **kwargs)
            except Exception:
                if self.error_score == "raise":
                    raise
                result[name] = _error_scores(self.scoring, self.error_score)
        result["score_time"] = time.perf_counter() - start


def _group(plan):
    """What the plans trained in one pass share, or None for one that trains alone."""
    model, opt = plan.model, plan.options["optimizer"]
    if isinstance(opt, LBFGS) or opt is None:
        return None
    return (model.backend.name, model.dtype.name, tuple(model.layer_sizes),
            tuple(a.name for a in model.activations), model.head.name, opt.rule.name)


def _fit_alone(plan):
    """The history of the plan's model trained alone, or the exception it raised."""
    try:
        return plan.model.fit(plan.X, plan.Y, **plan.options)
    except Exception as exc:
        return exc


def _fit_together(plans: list) -> list:
    """The histories of the plans' models trained in one fit_many (a diverged one: its
    DivergenceError); the plans one by one when fit_many refuses them, so that each refusal
    is its own plan's. (A search's plans have fresh models, which fit_many's refusals leave
    without an optimizer; an error after training began is raised.)"""
    try:
        histories = fit_many([p.model for p in plans],
                             each=[{"X": p.X, "y": p.Y, **p.options} for p in plans])
    except (ValueError, TypeError):
        if any(p.model.state.optimizer is not None for p in plans):
            raise
        return [_fit_alone(p) for p in plans]
    return [h if h.error is None else h.error for h in histories]


def _split_param(value, rows, n: int):
    """A fit parameter of the training rows: arrays of one entry per sample are split."""
    if hasattr(value, "__len__") and not isinstance(value, (str, dict)) and len(value) == n:
        return _safe_indexing(value, rows)
    return value


def _error_scores(scoring, error_score):
    """error_score in the form of the scores: one number, or one per named scorer."""
    names = _scorer_names(scoring)
    return error_score if names is None else dict.fromkeys(names, error_score)


def _scorer_names(scoring):
    if isinstance(scoring, dict):
        return list(scoring)
    if isinstance(scoring, (list, tuple, set)):
        return list(scoring)
    return None


def _named_scorers(scoring) -> dict:
    """scorer_ for a list or dict of scorings: {name: scorer}, as GridSearchCV keeps it."""
    if isinstance(scoring, dict):
        return {k: get_scorer(v) if isinstance(v, str) else v for k, v in scoring.items()}
    return {name: get_scorer(name) for name in scoring}


def _fit_failures(out: list, error_score) -> None:
    """GridSearchCV's reaction to failed fits: ValueError when all failed, else a
    FitFailedWarning summing them up."""
    errors = [r["fit_error"] for r in out if r["fit_error"] is not None]
    if not errors:
        return
    summary = "\n".join(f"{'-' * 80}\n{n} fits failed with the following error:\n{e}"
                        for e, n in Counter(errors).items())
    if len(errors) == len(out):
        raise ValueError(f"\nAll the {len(out)} fits failed.\nIt is very likely that your "
                         f"model is misconfigured.\nYou can try to debug the error by "
                         f"setting error_score='raise'.\n\nBelow are more details about the "
                         f"failures:\n{summary}")
    warnings.warn(f"\n{len(errors)} fits failed out of a total of {len(out)}.\nThe score on "
                  f"these train-test partitions for these parameters will be set to "
                  f"{error_score}.\nIf these failures are not expected, you can try to debug "
                  f"them by setting error_score='raise'.\n\nBelow are more details about the "
                  f"failures:\n{summary}", FitFailedWarning, stacklevel=3)


@contextlib.contextmanager
def _threads(n_jobs):
    """numba's thread count set from n_jobs (None: unchanged; -1: all) for the search."""
    try:
        import numba
    except ImportError:
        yield
        return
    before, most = numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS
    if n_jobs is not None:
        numba.set_num_threads(most if n_jobs < 0 else max(1, min(int(n_jobs), most)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
