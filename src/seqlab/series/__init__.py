"""Numbers as sequences: a table of numeric channels in, per-step event probabilities out.

    seqlab train prices.csv --series --event "SPX:up=1%,down=0.5%,within=5"
    seqlab eval runs/latest          # the model against base rate, logistic and LightGBM, with intervals
    seqlab predict runs/latest new.csv -o new.probabilities.csv

    table.py      reading CSV / Parquet / a directory, alignment on time, the missing-value rule
    labels.py     events (triple barrier, touches, levels, a 0/1 column) -> labels per row
    features.py   per-channel transforms fitted on training rows; the baselines' lags and rolling stats
    splits.py     walk-forward folds, hold-out, purge, embargo, validation blocks
    fit.py        one fold's model: windows, early stopping, predictions (models/events.py is the model)
    baselines.py  base rate, L2 logistic regression, LightGBM on the same folds
    metrics.py    log loss, Brier, ROC/PR AUC, ECE with moving-block bootstrap intervals
    settings.py   `train --series` flags -> RunConfig; train.py the fold loop that writes the run
    evaluate.py   `seqlab eval` of a series run; predict.py loading a run and predicting new rows

docs/series.md is the user guide and the design notes. (Nothing is imported here: the verbs import the
modules they need, and run.py and train/ stay free of import cycles.)
"""
