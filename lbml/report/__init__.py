"""Run folders, metrics, equity reconciliation, plots and the quantstats tearsheet."""
