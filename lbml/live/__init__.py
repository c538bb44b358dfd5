"""Paper trading: the backtest's strategy, actors and cost modules under a nautilus ``TradingNode``."""
