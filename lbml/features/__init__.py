"""Feature plugins: one incremental implementation per feature, shared by training, backtest and live."""
