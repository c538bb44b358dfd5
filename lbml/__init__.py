"""lbml: leveraged crypto trading driven by machine-learned signals, on nautilus_trader."""

__version__ = "0.1.0"
