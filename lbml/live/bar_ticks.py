"""A bar of bar-only data as the trades the paper sandbox matches on, as nautilus' backtest venue does.

The paper sandbox fills orders on trade ticks only. A replay of bar data (1-minute klines, no
trades) therefore hands the venue each traded bar as trades, built the way nautilus 1.221's
backtest exchange turns an EXTERNAL bar into trades (``_process_trade_ticks_from_bar``): open,
high, low, close, high before low, a step skipped when it would not move the last price (the high
only above it, the low only below it, the close only when different); aggressor as nautilus sets
it. Sizes: the open carries the bar's whole volume, as ``NextOpenFillModule`` applies it in the
backtest (``[venue] bar_fill = "next_open"``, the only bar fill a replay has); the high, low and
close a quarter of it each (nautilus' split). A zero-volume bar's trades carry the size step. In the replay
(``lbml.live.events``) the open is flagged (``d = 1``): the gap-through charge prices a stop against the bar's open, as in the
backtest, not against the step that triggered it (the feed names the other steps
``lbml.engine.gaps.INSIDE_BAR_TRADE``).

Timing, and why it cannot look ahead. A bar closing at T is known at T: its trades and the bar are
stamped T (so fills carry the bar's close time, as in the backtest). The feed delivers, in this
order and each only after everything the previous item caused has been processed: bar t's trades
to the venue alone (never to the actors: in the backtest no actor sees a bar's inside), then
(custom data of time T, such as funding, and) bar t itself to the actors, whose decisions reach the
venue ``latency_ms`` of market time later. Those orders are therefore first matched against bar
t+1's open trade (a market order fills at that open), and their stop-loss and take-profit then
see bar t+1's high, low and close. No actor ever sees a trade of a bar before the bar has closed,
and no order decided on bar t can be matched against any price of bar t.
"""


def bar_trades(o: float, h: float, low: float, c: float, volume: float,
               last: float | None) -> tuple[list[tuple[float, float, float]], float]:
    """The trades ``(price, size, side)`` of one bar (side 1 buyer, -1 seller), the open first, after a
    last price ``last`` (None: the first bar); and the new last price."""
    quarter = volume / 4.0
    out = [(o, volume, 1.0 if last is None or o > last else -1.0)]
    last = o
    if h > last:
        out.append((h, quarter, 1.0))
        last = h
    if low < last:
        out.append((low, quarter, -1.0))
        last = low
    if c != last:
        out.append((c, quarter, 1.0 if c > last else -1.0))
        last = c
    return out, last
