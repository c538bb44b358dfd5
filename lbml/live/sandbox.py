"""The paper venue: nautilus' sandbox execution client with the backtest's order latency.

``SandboxExecutionClient`` wraps a ``SimulatedExchange`` driven by the live data, but it executes
every command the moment it arrives (no latency model, no message queue), so a market order sent on
a bar close would fill against the book *as of* that close, while the backtest fills it on the first
event at least ``latency_ms`` later. ``PaperExecutionClient`` holds commands until the first market
event at or after (market time of submission + latency) and runs them in the backtest's order:
update the book with the event, execute due commands, then run the simulation modules. Market time
is the latest event or bar time seen, so it follows the data, not the wall clock (a replay at
``--speed`` stays consistent). Funding and depth custom data count as market events too: the
backtest engine runs its venues after every data point, so an order due by then is matched there,
against the book as of that instant.

The cost modules (borrow, funding, liquidation, slippage, gas) are attached to ``exchange`` after ``node.build()``.
"""

from collections.abc import Callable

from lbml.engine.custom_data import DEPTH_TYPE, FUNDING_TYPE, FundingRate
from lbml.nautilus.bus import subscribe_all_bars, subscribe_data_type
from lbml.nautilus.custom_data import unwrap_custom
from lbml.nautilus.live import LiveExecClientFactory, SandboxExecutionClient, SandboxExecutionClientConfig
from lbml.nautilus.model import Bar, Instrument, QuoteTick, TradeTick


class PaperExecClientConfig(SandboxExecutionClientConfig, frozen=True):
    latency_ns: int = 1_000_000


class PaperExecutionClient(SandboxExecutionClient):
    """Sandbox execution with commands delayed by ``latency_ns`` of market time."""

    def __init__(self, loop, portfolio, msgbus, cache, clock, config: PaperExecClientConfig) -> None:
        super().__init__(loop=loop, portfolio=portfolio, msgbus=msgbus, cache=cache, clock=clock, config=config)
        self._latency_ns = config.latency_ns
        self._deferred: list[tuple[int, object, object]] = []
        self.market_ns = 0
        # Called with (ts, rate) for every funding settlement the feed delivers, before the venue
        # runs at that time (the node builder binds it to the funding module, if any).
        self.on_funding: Callable[[int, float], None] | None = None

    def connect(self) -> None:
        super().connect()
        subscribe_all_bars(self._msgbus, self._on_bar_time)
        # Custom data has no instrument, so it is not on this venue's topics.
        for data_type in (FUNDING_TYPE, DEPTH_TYPE):
            subscribe_data_type(self._msgbus, data_type, self.on_data)

    def _on_bar_time(self, bar: Bar) -> None:
        # Subscribed before any actor: commands sent in reaction to a bar are timed from its close.
        self.market_ns = max(self.market_ns, bar.ts_event)

    def on_bar_closed(self, ts: int) -> None:
        """Run the venue at a bar's close, after the node has reacted to the bar.

        The backtest engine runs its venues (and their cost modules) right after each timer
        callback, at the timer's time; the feed calls this at the same point of the sequence.
        """
        if ts <= self.test_clock.timestamp_ns():
            return
        self.test_clock.set_time(max(ts, self.test_clock.timestamp_ns()))
        self._release(ts)
        self.exchange.process(ts)

    @property
    def n_deferred(self) -> int:
        return len(self._deferred)

    def _defer(self, execute, command) -> None:
        self._deferred.append((self.market_ns + self._latency_ns, execute, command))

    def submit_order(self, command):
        self._submitted(command.strategy_id, command.order)
        self._defer(self.exchange.send, command)

    def submit_order_list(self, command):
        for order in command.order_list.orders:
            self._submitted(command.strategy_id, order)
        self._defer(self.exchange.send, command)

    def _submitted(self, strategy_id, order) -> None:
        # As the backtest's execution client does: the order is SUBMITTED at once, only its arrival
        # at the venue waits for the latency. (Held INITIALIZED meanwhile, it looked unsent to the
        # strategy, whose liquidation guard then placed a second stop on the entry's bar.)
        self._client.generate_order_submitted(strategy_id=strategy_id, instrument_id=order.instrument_id,
                                              client_order_id=order.client_order_id,
                                              ts_event=self.test_clock.timestamp_ns())

    def modify_order(self, command):
        self._defer(self._client.modify_order, command)

    def cancel_order(self, command):
        self._defer(self._client.cancel_order, command)

    def cancel_all_orders(self, command):
        self._defer(self._client.cancel_all_orders, command)

    def on_data(self, data) -> None:
        ts = data.ts_init
        if isinstance(data, Instrument):
            self.exchange.update_instrument(data)
            return
        self.market_ns = max(self.market_ns, ts)
        self.test_clock.set_time(max(ts, self.test_clock.timestamp_ns()))
        funding = unwrap_custom(data)  # CustomData wraps the FundingRate
        if isinstance(funding, FundingRate) and self.on_funding is not None:
            self.on_funding(funding.ts_event, funding.rate)
        if isinstance(data, QuoteTick):
            self.exchange.process_quote_tick(data)
        elif isinstance(data, TradeTick):
            self.exchange.process_trade_tick(data)
        self._release(ts)
        self.exchange.process(ts)

    def _release(self, ts: int) -> None:
        while self._deferred and self._deferred[0][0] <= ts:
            _, execute, command = self._deferred.pop(0)
            execute(command)


class PaperExecClientFactory(LiveExecClientFactory):
    @staticmethod
    def create(loop, name, config, portfolio, msgbus, cache, clock):  # type: ignore[override]
        return PaperExecutionClient(loop, portfolio, msgbus, cache, clock, config)
