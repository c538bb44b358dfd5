"""The engine seam: the only package of lbml that imports ``nautilus_trader``.

Every other module reaches the engine through one of these modules, each with one job, so that a
move to another engine line (nautilus v2, docs/ENGINE.md §8-§9) is a port of this package:

- ``model``: value types, enums, identifiers, events, instruments, bar types; building prices,
  quantities, bars and ticks from floats and arrays.
- ``custom_data``: lbml's own message types on the engine's bus (define, wrap, publish, subscribe).
- ``trading``: strategies, actors, component configs, order lists; bus subscriptions and account
  reads a component makes.
- ``backtest``: the backtest engine, its venue, fee and latency models, and ``VenueModule``, the
  base of lbml's venue simulation modules (account charges, positions, marks, fills).
- ``live``: the paper/live node, its data and execution clients, and the Binance adapter pieces.
- ``orderbook``: the engine's L2 order book, for the order-book importers.
- ``stats``: the engine's numeric kernels a feature mirrors.
- ``compat``: differences between engine versions.

This ``__init__`` imports nothing, so importing one module does not load the others.
"""
