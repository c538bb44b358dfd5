"""The research chain: from a training window to a model whose out-of-sample evidence can be trusted.

Labels (``labels``), purged walk-forward and combinatorial cross-validation (``validation``, with
parameter-learning features refitted per fold in ``folds``), the EV rule and out-of-fold statistics
(``evaluation``, ``payoff``, ``stats``), feature importance (``importance``), the trial registry
behind the deflated Sharpe ratio (``trials``), the edge gate (``gate``), and ``training``, which runs
the chain and writes the model artifact. Imports data, features, models and the pricing layer;
never the engine, reports, workflows or live trading (``tests/test_layering.py``).
"""
