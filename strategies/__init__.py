"""Trading strategies (nautilus_trader Strategy subclasses) named by scenarios."""
