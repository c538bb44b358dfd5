"""The nautilus_trader side of lbml: instruments, data conversion, actors, cost modules, backtest runner."""
