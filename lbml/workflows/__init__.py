"""Workflows over the research chain and the engine, one module each.

``prepare`` (load, split, train, warm up), ``run`` (a scenario from file to run folder: what
``lbml train`` and ``lbml backtest`` call), ``walkforward``, ``search`` (Optuna), ``robustness``
(Monte Carlo, regimes, the sensitivity grid), ``tracking`` (MLflow) and ``compare`` (tracked runs
side by side). Only the live package and the CLI import these.
"""
