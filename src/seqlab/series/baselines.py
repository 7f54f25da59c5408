"""The baselines, fitted on the same rows of the same folds as the model, in the same run.

  base_rate  the positive rate of the fold's training rows, predicted for every row;
  logistic   L2-regularised logistic regression (scikit-learn) on the lag features, its C picked from
             C_GRID by log loss on the fold's validation block;
  lightgbm   gradient-boosted trees (LightGBM) on the lags plus rolling means and volatilities, stopped
             early on the validation block.
Every fitted baseline is kept in the run as text: LightGBM's own model format, the logistic
coefficients (with the standardisation they apply to) as JSON.
"""

import numpy as np

BASELINES = ("base_rate", "logistic", "lightgbm")
C_GRID = (0.001, 0.01, 0.1, 1.0)
LGBM_PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50,
               "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
               "verbose": -1, "deterministic": True, "force_col_wise": True}
MAX_ROUNDS, STOP_ROUNDS = 1000, 50


def known(y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return rows[~np.isnan(y[rows])]


def fit_logistic(features: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int):
    """(probabilities for every row, the fitted coefficients as a dict) for one event's labels y (T,)."""
    from sklearn.linear_model import LogisticRegression

    train, val = known(y, train), known(y, val)
    mean = np.nanmean(features[train], axis=0)
    std = np.nanstd(features[train], axis=0)
    std = np.where(std > 0, std, 1.0)
    z = np.nan_to_num((features - mean) / std)  # a lag before the first row: the training mean
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=500, random_state=seed).fit(z[train], y[train])
        p = np.clip(clf.predict_proba(z[val])[:, 1], 1e-7, 1 - 1e-7) if len(val) else None
        loss = -np.mean(y[val] * np.log(p) + (1 - y[val]) * np.log1p(-p)) if len(val) else 0.0
        if best is None or loss < best[0]:
            best = (loss, c, clf)
    _, c, clf = best
    record = {"C": c, "coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0]),
              "mean": mean.tolist(), "std": std.tolist()}
    return clf.predict_proba(z)[:, 1], record


def fit_lightgbm(features: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int,
                 threads: int):
    """(probabilities for every row, the booster in LightGBM's text format)."""
    import lightgbm as lgb

    train, val = known(y, train), known(y, val)
    params = {**LGBM_PARAMS, "seed": seed, "num_threads": threads}
    data = lgb.Dataset(features[train], y[train], params={"verbose": -1})
    valid = [lgb.Dataset(features[val], y[val], reference=data)] if len(val) else []
    callbacks = [lgb.early_stopping(STOP_ROUNDS, verbose=False)] if valid else []
    booster = lgb.train(params, data, num_boost_round=MAX_ROUNDS, valid_sets=valid, callbacks=callbacks)
    best = booster.best_iteration or booster.current_iteration()
    return booster.predict(features, num_iteration=best), booster.model_to_string(num_iteration=best)


def fit_baselines(lags: np.ndarray, trees: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray,
                  seed: int, threads: int) -> tuple[dict, dict]:
    """({baseline: probabilities (T,)}, {"logistic": coefficients, "lightgbm": model text}) for one event."""
    rate = float(np.mean(y[known(y, train)]))
    p_logistic, coefficients = fit_logistic(lags, y, train, val, seed)
    p_trees, model_text = fit_lightgbm(trees, y, train, val, seed, threads)
    preds = {"base_rate": np.full(len(y), rate), "logistic": p_logistic, "lightgbm": p_trees}
    return preds, {"base_rate": rate, "logistic": coefficients, "lightgbm": model_text}
