"""Leverage models lbml simulates on top of nautilus: exchange isolated margin and Aave-style lending."""
