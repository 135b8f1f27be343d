"""Feature names: what a table's column names tell about X, read without importing pandas.

An X with a `columns` attribute whose names are all strings (a pandas DataFrame, or any
table that looks like one) has feature names, as scikit-learn's `feature_names_in_` defines
them; anything else has none. A model fitted on named features refuses named features that
differ (other names, or another order) in every later call; unnamed input (a NumPy array)
is taken as it is.
"""

from __future__ import annotations

import numpy as np


def feature_names(X) -> np.ndarray | None:
    """X's column names as an object array (n_features,), or None when X has no `columns`
    or names that are not strings (integers, as pandas numbers columns by default).
    TypeError for names that mix strings and other types, as scikit-learn's."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(list(columns), dtype=object)
    strings = [isinstance(n, str) for n in names]
    if not any(strings):
        return None
    if not all(strings):
        kinds = sorted({type(n).__name__ for n in names})
        raise TypeError(f"X's column names must all be strings to serve as feature names, "
                        f"got names of types {kinds}; rename the columns (e.g. "
                        f"X.columns = X.columns.astype(str))")
    return names


def check_feature_names(fitted: np.ndarray | None, X) -> np.ndarray | None:
    """X's feature names, checked against those a model was fitted with: ValueError naming
    the differences when both have names and they differ. Returns X's names (or None)."""
    names = feature_names(X)
    if fitted is not None and names is not None:
        compare_names(fitted, names, "X's feature names")
    return names


def compare_names(fitted, names, what: str) -> None:
    """ValueError when the feature names `names` differ from `fitted` (those a model was
    fitted with), naming the differences; `what` starts the message."""
    if np.array_equal(np.asarray(names, dtype=object), np.asarray(fitted, dtype=object)):
        return
    unexpected = [n for n in names if n not in set(fitted)]
    missing = [n for n in fitted if n not in set(names)]
    detail = []
    if unexpected:
        detail.append(f"names unseen at fit time: {unexpected[:10]}")
    if missing:
        detail.append(f"names seen at fit time, missing now: {missing[:10]}")
    if not detail:
        detail.append(f"the order differs: fitted with {list(fitted)[:10]}, got "
                      f"{list(names)[:10]}")
    raise ValueError(f"{what} differ from those the model was fitted with; "
                     f"{'; '.join(detail)}")
