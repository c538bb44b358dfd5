"""Records what a run did — fills, closed positions, a mark-to-market equity curve — as it happens.

The backtest purges closed orders and positions from the nautilus cache to keep its cost linear, so
reports are built from this record rather than from the cache. Works the same in a live node.

It also checks the exposure cap on every bar (``EXPOSURE_TOLERANCE``; a breach is recorded and, via
``check_invariants`` or ``on_breach``, fails the run) and records why each position closed (the
closing order's reason tag, ``lbml.engine.exit_reasons``).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from lbml.engine.columns import Rows
from lbml.engine.position_state import position_state
from lbml.engine.exit_reasons import END_OF_DATA, OTHER, reason_of
from lbml.errors import InvariantError
from lbml.leverage.model import LIQUIDATION_TAG, LeverageSpec, build_leverage_model
from lbml.nautilus.bus import subscribe_fills, subscribe_position_events
from lbml.nautilus.model import (
    Bar,
    BarType,
    InstrumentId,
    LiquiditySide,
    OrderFilled,
    OrderSide,
    PositionClosed,
    PositionOpened,
    make_price,
    order_type_to_str,
)
from lbml.nautilus.trading import Actor, ActorConfig, cash_balance
from lbml.pricing import position_caps


class RunRecorderConfig(ActorConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    leverage: LeverageSpec | None = None
    exposure_caps: tuple[float, float] | None = None  # (long, short), lbml.pricing.position_caps


def recorder_config(scenario, instrument_id: InstrumentId, bar_type: BarType, leverage: LeverageSpec | None) -> RunRecorderConfig:
    """The recorder of a run of ``scenario``: checks the strategy's exposure caps on every bar."""
    s = scenario.strategy
    return RunRecorderConfig(
        component_id="RunRecorder", instrument_id=instrument_id, bar_type=bar_type, leverage=leverage,
        exposure_caps=position_caps(s.max_leverage, s.max_position_fraction, leverage),
    )


#: A position's entry exposure may exceed its cap by this fraction before the run fails. The strategy
#: sizes against the decision bar's close and its balance then; the order fills at the next price
#: (a fast market or a data gap moves it by a few percent) and the entry fee lowers the balance. A
#: second entry on top of an open position doubles the exposure and is caught with a wide margin.
EXPOSURE_TOLERANCE = 0.05
_INF, _NAN = float("inf"), float("nan")
EQUITY_FIELDS = ("ts", "equity", "balance", "close")
RISK_FIELDS = ("ts", "exposure", "leverage", "health", "liquidation_price")


@dataclass
class RunRecord:
    """One equity and one risk row per bar (stored column-wise, ``lbml.engine.columns.Rows``),
    every fill and every closed position. Lists of tuples passed in are converted."""

    equity: Rows = field(default_factory=lambda: Rows("qddd"))  # ts, equity, balance, close
    fills: list[dict] = field(default_factory=list)
    positions: list[dict] = field(default_factory=list)
    risk: Rows = field(default_factory=lambda: Rows("qdddd"))
    # ts, signed exposure (quote), leverage (|exposure| / equity), health, liquidation price
    max_exposure: float = 0.0  # largest entry exposure of any bar (notional at entry price / equity at entry)
    exposure_caps: tuple[float, float] | None = None  # (long, short) the run was checked against
    breach: str | None = None  # the first bar whose position broke its cap

    def __post_init__(self) -> None:
        if not isinstance(self.equity, Rows):
            self.equity = Rows("qddd", self.equity)
        if not isinstance(self.risk, Rows):
            self.risk = Rows("qdddd", self.risk)

    def risk_frame(self) -> pd.DataFrame:
        return _frame(self.risk, RISK_FIELDS)

    def equity_frame(self) -> pd.DataFrame:
        return _frame(self.equity, EQUITY_FIELDS)

    def fills_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.fills, columns=list(FILL_COLUMNS))

    def trades_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.positions, columns=list(TRADE_COLUMNS))


FILL_COLUMNS = (
    "ts", "order_id", "side", "quantity", "price", "commission", "liquidity", "order_type", "liquidation",
    "exit_reason",  # empty for an entry (lbml.engine.exit_reasons)
)
TRADE_COLUMNS = (
    "opened", "closed", "side", "quantity", "entry_price", "exit_price", "realized_pnl", "duration_min",
    "exit_reason",
)


def check_invariants(record: RunRecord) -> None:
    """Raise ``InvariantError`` if the run broke one of lbml's guarantees (its exposure cap)."""
    if record.breach is not None:
        raise InvariantError(record.breach)


def _frame(rows: Rows, fields: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame({name: rows.column(j) for j, name in enumerate(fields[1:], start=1)},
                         index=pd.to_datetime(rows.column(0), utc=True), columns=list(fields[1:]))
    frame.index.name = "ts"
    return frame


class RunRecorder(Actor):
    """Samples equity (marked at the close) at every bar close and records every fill and closed position."""

    def __init__(self, config: RunRecorderConfig, on_breach: Callable[[str], None] | None = None) -> None:
        super().__init__(config)
        self.record = RunRecord(exposure_caps=config.exposure_caps)
        self._on_breach = on_breach
        self._venue = config.instrument_id.venue
        self._model = build_leverage_model(config.leverage) if config.leverage is not None else None
        self._entry_balance: float | None = None

    def on_start(self) -> None:
        self.subscribe_bars(self.config.bar_type)
        subscribe_fills(self.msgbus, self._on_fill, self.config.instrument_id)
        subscribe_position_events(self.msgbus, self._on_position_event)

    def on_bar(self, bar: Bar) -> None:
        # Mark to market at the bar's close (last trade), the same mark the reconciliation uses.
        account = self.portfolio.account(self._venue)
        balance = cash_balance(account)
        unrealized = 0.0
        positions = self.cache.positions_open(instrument_id=self.config.instrument_id)
        for position in positions:
            unrealized += position.unrealized_pnl(bar.close).as_double()
        self.record.equity.append((bar.ts_event, balance + unrealized, balance, bar.close.as_double()))
        if not positions:  # flat (most bars): no position state to read
            self.record.risk.append((bar.ts_event, 0.0, 0.0, _INF, _NAN))
            return
        self._record_risk(bar, account, balance + unrealized)

    def _record_risk(self, bar: Bar, account, equity: float) -> None:
        close = bar.close.as_double()
        state = position_state(self.cache, account, self.config.instrument_id, self._entry_balance)
        if state is None:
            self.record.risk.append((bar.ts_event, 0.0, 0.0, _INF, _NAN))
            return
        self._check_exposure(bar.ts_event, state)
        exposure = state.notional(close) * (1.0 if state.long else -1.0)
        leverage = abs(exposure) / equity if equity > 0 else float("inf")
        health, liq = float("inf"), float("nan")
        if self._model is not None:
            health = self._model.health(state, close)
            price = self._model.liquidation_price(state)
            liq = price if price is not None else float("nan")
        self.record.risk.append((bar.ts_event, exposure, leverage, health, liq))

    def _check_exposure(self, ts: int, state) -> None:
        """The cap invariant: notional at the entry price over the balance at entry, per bar."""
        if state.entry_balance <= 0.0:
            return
        exposure = state.quantity * state.avg_price / state.entry_balance
        record = self.record
        record.max_exposure = max(record.max_exposure, exposure)
        caps = self.config.exposure_caps
        if caps is None or record.breach is not None:
            return
        cap = caps[0] if state.long else caps[1]
        if exposure > cap * (1.0 + EXPOSURE_TOLERANCE):
            record.breach = (
                f"exposure cap broken at {pd.Timestamp(ts, tz='UTC')}: {'long' if state.long else 'short'} "
                f"{state.quantity:g} at {state.avg_price:g} is {exposure:.2f}x the balance at entry "
                f"{state.entry_balance:,.2f}, cap {cap:g}x (tolerance {EXPOSURE_TOLERANCE:.0%})"
            )
            if self._on_breach is not None:
                self._on_breach(record.breach)

    def _on_fill(self, fill: OrderFilled) -> None:
        tags = self._tags(fill.client_order_id)
        self.record.fills.append(
            {
                "ts": fill.ts_event,
                "order_id": fill.client_order_id.value,
                "side": "BUY" if fill.order_side == OrderSide.BUY else "SELL",
                "quantity": fill.last_qty.as_double(),
                "price": fill.last_px.as_double(),
                "commission": fill.commission.as_double(),
                "liquidity": "MAKER" if fill.liquidity_side == LiquiditySide.MAKER else "TAKER",
                "order_type": order_type_to_str(fill.order_type),
                "liquidation": LIQUIDATION_TAG in tags,
                "exit_reason": reason_of(tags) or "",
            }
        )

    def _tags(self, client_order_id) -> list[str]:
        order = self.cache.order(client_order_id) if client_order_id is not None else None
        return (order.tags or []) if order is not None else []

    def _on_position_event(self, event) -> None:
        if isinstance(event, PositionOpened):
            account = self.portfolio.account(self._venue)
            self._entry_balance = cash_balance(account)
        if not isinstance(event, PositionClosed):
            return
        self._entry_balance = None
        self.record.positions.append(
            {
                "opened": event.ts_opened,
                "closed": event.ts_closed,
                "side": "LONG" if event.entry == OrderSide.BUY else "SHORT",
                "quantity": event.peak_qty.as_double(),
                "entry_price": event.avg_px_open,
                "exit_price": event.avg_px_close,
                "realized_pnl": event.realized_pnl.as_double(),
                "duration_min": event.duration_ns / 60e9,
                "exit_reason": reason_of(self._tags(event.closing_order_id)) or OTHER,
            }
        )

    def record_end_of_data(self) -> None:
        """Book the position still open at the end of the data as a trade marked at the last close."""
        if not self.record.equity:
            return
        ts, _, _, close = self.record.equity[-1]
        instrument = self.cache.instrument(self.config.instrument_id)
        mark = make_price(instrument, close)
        for position in self.cache.positions_open(instrument_id=self.config.instrument_id):
            self.record.positions.append(
                {
                    "opened": position.ts_opened,
                    "closed": ts,
                    "side": "LONG" if position.entry == OrderSide.BUY else "SHORT",
                    "quantity": position.peak_qty.as_double(),
                    "entry_price": position.avg_px_open,
                    "exit_price": mark.as_double(),
                    "realized_pnl": position.realized_pnl.as_double() + position.unrealized_pnl(mark).as_double(),
                    "duration_min": (ts - position.ts_opened) / 60e9,
                    "exit_reason": END_OF_DATA,
                }
            )
