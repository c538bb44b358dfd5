"""nautilus' numeric kernels that a feature mirrors bit for bit (``BollingerBands.update_raw``).

``core.stats`` is gone on v2: a port replaces these by numpy or lbml's own code, checked against
the 1.221 values (``tests/test_features_rolling.py``).
"""

from nautilus_trader.core.stats import fast_mean, fast_std_with_mean

__all__ = ["fast_mean", "fast_std_with_mean"]
