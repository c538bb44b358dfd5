"""Scenarios: frozen, validated experiment definitions loaded from ``scenarios/*.toml``.

A scenario fully describes one experiment (data, split, features, labels, model, strategy, costs,
venue, report). Unknown keys and out-of-range values are rejected with one line naming the file,
the key and the reason. The resolved scenario is saved next to every result.

Types are strict: a number written as a string (``train_fraction = "0.6"``), a float where an
integer is expected or ``0``/``1`` for a boolean are refused, and so is NaN or infinity in any float
(``[model.params]`` and feature parameters included). The data source is never implied: a scenario
names it in ``[data] source``. Relative data paths are relative to the scenario file's folder.
"""

import hashlib
import json
import math
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from lbml.errors import ConfigError
from lbml.settings import format_validation_error


# Strict scalars: no coercion from strings (or from floats to ints, ints to bools); a float field takes an int.
Float = Annotated[float, Strict()]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]

#: The largest starting balance: nautilus holds money in fixed point up to MONEY_MAX (1.7e13), and a
#: position's notional (balance x leverage, up to 125x) must fit in it too (tests/test_scenario_strict.py).
MAX_STARTING_BALANCE = 1e11


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _finite_params(value: dict[str, Any]) -> dict[str, Any]:
    def walk(item: Any, key: str) -> None:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{key} = {item} is not a finite number")
        if isinstance(item, dict):
            for k, v in item.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(item, list | tuple):
            for i, v in enumerate(item):
                walk(v, f"{key}[{i}]")

    walk(value, "")
    return value


class DataConfig(_Section):
    """Where market data comes from and how it reaches the engine."""

    source: Literal["synthetic", "files"] = Field(
        description="required: 'synthetic' (the embedded market) or 'files' (data.paths)"
    )
    symbol: str = Field("BNBUSDT", pattern=r"^[A-Z0-9]{2,20}$")
    reference_symbol: str | None = Field("BTCUSDT", pattern=r"^[A-Z0-9]{2,20}$")
    venue: str = Field("BINANCE", pattern=r"^[A-Z0-9_]{2,20}$")
    paths: tuple[Path, ...] = ()
    reference_paths: tuple[Path, ...] = ()
    funding_paths: tuple[Path, ...] = ()
    days: Int = Field(30, ge=2, le=3650, description="synthetic market length")
    seed: Int = Field(7, ge=0)
    edge: Float = Field(
        0.0, ge=0, le=1, description="synthetic only: planted momentum predictability (0 = none)"
    )
    bar_minutes: Int = Field(1, ge=1, le=1440)
    trend_drift: Float = Field(
        0.03, ge=0, le=1, description="synthetic only: drift in the trending regime (0 with edge 0 = martingale)"
    )
    depth_paths: tuple[Path, ...] = Field(
        (), description="files source: order-book files (Tardis book snapshots, Binance depth CSV or capture) of data.symbol"
    )
    max_gap_minutes: Int = Field(
        1440, ge=1, description="refuse a hole in any symbol's bars longer than this (real markets pause for hours)"
    )
    max_bar_move: Float = Field(
        2.0, gt=1, description="refuse a bar whose high or low is more than this factor away from the previous close"
    )

    def resolved(self, base: Path) -> "DataConfig":
        """Return a copy whose relative file paths are taken relative to ``base`` (absolute, normalised)."""
        def absolute(p: Path) -> Path:
            p = p.expanduser()
            return p if p.is_absolute() else Path(os.path.normpath(base.absolute() / p))

        return self.model_copy(update={name: tuple(absolute(p) for p in getattr(self, name)) for name in PATH_FIELDS})

    @model_validator(mode="after")
    def _files_need_paths(self) -> "DataConfig":
        if self.source == "files" and not self.paths:
            raise ValueError("source = 'files' needs at least one entry in data.paths")
        return self

    @model_validator(mode="after")
    def _depth_needs_files(self) -> "DataConfig":
        if self.depth_paths and self.source != "files":
            raise ValueError("data.depth_paths needs source = 'files'")
        return self


#: The fields of ``[data]`` that name files (resolved against the scenario file's folder).
PATH_FIELDS = ("paths", "reference_paths", "funding_paths", "depth_paths")


class SplitConfig(_Section):
    """Chronological train/backtest split; the backtest never sees training data."""

    train_fraction: Float = Field(0.5, gt=0.05, lt=0.95)
    embargo_bars: Int = Field(60, ge=0)


class FeaturePluginConfig(_Section):
    plugin: str
    params: dict[str, Any] = {}

    _finite = field_validator("params")(_finite_params)


class FeaturesConfig(_Section):
    plugins: tuple[FeaturePluginConfig, ...] = Field(
        (FeaturePluginConfig(plugin="core"),), min_length=1
    )


class LabelsConfig(_Section):
    """Training labels; see ``lbml.research.labels`` (every kind keeps the label end time t1)."""

    kind: Literal["fixed_horizon", "vol_scaled", "triple_barrier"] = "fixed_horizon"
    horizon_bars: Int = Field(15, ge=1, le=10_000)
    dead_zone_bps: Float = Field(0.0, ge=0, le=1_000)
    vol_estimator: Literal["realized", "parkinson", "garman_klass", "yang_zhang", "atr"] = "realized"
    vol_window: Int = Field(100, ge=2, le=100_000, description="bars in the trailing volatility window")
    vol_k: Float = Field(0.5, ge=0, le=20, description="vol_scaled: neutral zone k * sigma * sqrt(h)")
    profit_mult: Float = Field(1.0, gt=0, le=50, description="triple_barrier: upper barrier in sigma*sqrt(h)")
    stop_mult: Float = Field(1.0, gt=0, le=50, description="triple_barrier: lower barrier in sigma*sqrt(h)")


class ValidationConfig(_Section):
    """Purged out-of-sample evaluation inside the training window (see ``lbml.research.validation``)."""

    method: Literal["walk_forward", "cpcv"] = "walk_forward"
    n_splits: Int = Field(5, ge=2, le=50, description="walk_forward: number of test folds")
    expanding: Bool = Field(True, description="walk_forward: expanding (true) or sliding training window")
    n_groups: Int = Field(6, ge=3, le=20, description="cpcv: number of groups N")
    n_test_groups: Int = Field(2, ge=1, le=10, description="cpcv: test groups per split k")
    embargo_fraction: Float = Field(0.01, ge=0, le=0.2, description="embargo as a fraction of the samples")
    early_stopping_fraction: Float = Field(0.15, gt=0, lt=0.5)
    calibration: Literal["auto", "sigmoid", "isotonic", "none"] = "auto"
    calibration_fraction: Float = Field(0.15, gt=0, lt=0.5, description="final purged block for the calibrator")
    fold_calibration: Bool = Field(
        True,
        description="calibrate each CV fold's predictions on its validation block, as the deployed model is "
        "calibrated: the EV margin and the edge gate then judge the probabilities the engine will see",
    )
    sample_weights: Literal["none", "uniqueness", "balanced"] = "none"
    ev_margins: tuple[Float, ...] = Field(
        (0.0, 0.01, 0.02, 0.05), min_length=1, description="margins over break-even tried on OOF (each counts as a trial)"
    )
    bootstrap_reps: Int = Field(500, ge=50, le=100_000)

    @model_validator(mode="after")
    def _groups(self) -> "ValidationConfig":
        if self.n_test_groups >= self.n_groups:
            raise ValueError("n_test_groups must be smaller than n_groups")
        return self


class WalkForwardConfig(_Section):
    """``lbml walkforward``: retrain every K days, trade only the following period."""

    retrain_every_days: Float = Field(7.0, gt=0, le=365)
    window: Literal["expanding", "sliding"] = "expanding"
    train_days: Float = Field(14.0, gt=0, le=3650, description="first training span; the sliding window's length")


class ResamplingConfig(_Section):
    """Class-imbalance resampling of each fold's training rows only (``lbml.models.resampling``)."""

    method: Literal["none", "smote", "undersample"] = "none"
    sampling_strategy: Float = Field(
        1.0, gt=0, le=1, description="minority / majority count after resampling (a fold already as balanced is left as is)"
    )
    k_neighbors: Int = Field(5, ge=1, le=100, description="smote: minority neighbours to interpolate towards")
    random_state: Int = Field(0, ge=0)

    @model_validator(mode="after")
    def _effective(self) -> "ResamplingConfig":
        unused = ("sampling_strategy", "k_neighbors", "random_state") if self.method == "none" else (
            ("k_neighbors",) if self.method == "undersample" else ())
        for name in unused:
            if getattr(self, name) != type(self).model_fields[name].default:
                raise ValueError(f"{name} has no effect with method = {self.method!r}")
        return self


class ModelConfig(_Section):
    plugin: str = "xgboost"
    params: dict[str, Any] = {}
    resampling: ResamplingConfig = ResamplingConfig()

    _finite = field_validator("params")(_finite_params)


class StrategyConfig(_Section):
    """Fractional-Kelly leveraged strategy with stop-loss/take-profit brackets."""

    class_path: str = Field(
        "strategies.kelly_leverage:KellyLeverage", pattern=r"^strategies(\.\w+)+:\w+$",
        description="a class in lbml's `strategies` package (module:Class); nothing outside it is imported",
    )
    kelly_fraction: Float = Field(0.25, gt=0, le=1)
    max_leverage: Float = Field(3.0, ge=1, le=20)
    max_position_fraction: Float = Field(0.5, gt=0, le=1)
    min_notional: Float = Field(10.0, ge=0)
    stop_loss_pct: Float = Field(0.01, gt=0, lt=0.5)
    take_profit_pct: Float = Field(0.015, gt=0, lt=1)
    max_holding_bars: Int = Field(240, ge=1)
    probability_shrinkage: Float = Field(1.0, ge=0, le=1)
    probability_n_eff: Float = Field(
        0.0, ge=0, description="samples behind the calibrated probability: shrink its edge by one standard error (0 = off)"
    )
    trailing_stop: Bool = Field(False, description="stop-loss trails the price by stop_loss_pct (TRAILING_STOP_MARKET)")
    params: dict[str, Any] = Field(
        {}, description="further fields of the strategy class's own config (e.g. HybridFilterConfig's filters); "
        "a name the class does not have is refused when the run starts"
    )

    _finite = field_validator("params")(_finite_params)


class CostsConfig(_Section):
    maker_fee: Float = Field(0.0002, ge=0, le=0.01)
    taker_fee: Float = Field(0.0004, ge=0, le=0.01)
    slippage_bps: Float = Field(1.0, ge=0, le=100)
    borrow_apr_quote: Float = Field(0.08, ge=0, le=5)
    borrow_apr_base: Float = Field(0.05, ge=0, le=5)
    borrow_interval_minutes: Int = Field(60, ge=1, le=1440)
    latency_ms: Float = Field(1.0, gt=0, le=60_000)
    slippage_model: Literal["fixed", "volatility"] = Field(
        "fixed", description="fixed: slippage_bps; volatility: slippage_vol_k × σ(1-minute returns), floor slippage_bps"
    )
    slippage_vol_k: Float = Field(0.5, ge=0, le=100)
    gas_per_tx: Float = Field(0.0, ge=0, description="DEX: account currency charged per transaction (fill)")


class VenueConfig(_Section):
    starting_balance: Float = Field(
        100_000.0, gt=0, le=MAX_STARTING_BALANCE, description="in the traded pair's quote currency (USDT for *USDT pairs)"
    )
    bar_fill: Literal["next_open", "next_close"] = Field(
        "next_open", description="bar data: an order decided on a bar's close fills at the next bar's open (or close)"
    )
    max_participation: Float = Field(
        1.0, gt=0, le=1, description="an entry takes at most this fraction of the last bar's volume"
    )


class LeverageConfig(_Section):
    """How leverage is financed and liquidated (``lbml.leverage``).

    ``none`` keeps the simple venue borrow of ``[costs]`` and never liquidates;
    ``exchange_margin`` is an isolated-margin perpetual with funding; ``aave_lending`` is an
    Aave-style collateral/debt position with a health factor (defaults: WBNB on BNB Chain).
    """

    model: Literal["none", "exchange_margin", "aave_lending"] = "none"
    margin_leverage: Float = Field(5.0, ge=1, le=125, description="exchange: isolated position leverage")
    maintenance_margin_rate: Float = Field(0.005, ge=0, lt=0.5)
    liquidation_fee: Float = Field(0.005, ge=0, lt=0.5, description="exchange: share of notional lost on liquidation")
    funding: Bool = Field(True, description="exchange: pay funding from the symbol's funding series")
    funding_multiplier: Float = Field(1.0, ge=0, le=100, description="exchange: stress factor on funding rates")
    ltv: Float = Field(0.70, gt=0, lt=1)
    liquidation_threshold: Float = Field(0.75, gt=0, lt=1)
    liquidation_bonus: Float = Field(0.10, ge=0, lt=0.5)
    close_factor: Float = Field(0.5, gt=0, le=1)
    full_close_hf: Float = Field(0.95, gt=0, le=1)
    borrow_rate: Literal["constant", "schedule", "utilisation"] = "constant"
    borrow_apr: Float = Field(0.05, ge=0, le=5, description="constant APR, or the APR before a schedule starts")
    rate_schedule: tuple[tuple[datetime, Float], ...] = Field(
        (), description="[[time, value], ...] as-of steps: APR for 'schedule', utilisation for 'utilisation'"
    )
    utilisation: Float = Field(0.8, ge=0, le=1)
    curve_base: Float = Field(0.0, ge=0, le=5)
    curve_slope1: Float = Field(0.05, ge=0, le=5)
    curve_slope2: Float = Field(0.75, ge=0, le=50)
    optimal_utilisation: Float = Field(0.90, gt=0, lt=1)
    stress_multiplier: Float = Field(1.0, gt=0, le=100)
    accrual_minutes: Int = Field(60, ge=1, le=1440)

    @model_validator(mode="after")
    def _consistent(self) -> "LeverageConfig":
        if self.ltv >= self.liquidation_threshold:
            raise ValueError("leverage.ltv must be below leverage.liquidation_threshold")
        if self.liquidation_threshold * (1 + self.liquidation_bonus) >= 1:
            raise ValueError("leverage.liquidation_threshold × (1 + liquidation_bonus) must be below 1")
        times = [t for t, _ in self.rate_schedule]
        if times != sorted(times):
            raise ValueError("leverage.rate_schedule must be in time order")
        if self.borrow_rate == "utilisation" and any(not 0 <= v <= 1 for _, v in self.rate_schedule):
            raise ValueError("leverage.rate_schedule values are utilisations in [0, 1] for borrow_rate = 'utilisation'")
        return self


class RobustnessConfig(_Section):
    """Monte Carlo, regimes, sensitivity sweep and buy-and-hold tables in the run folder (``lbml.workflows.robustness``)."""

    enabled: Bool = False
    mc_paths: Int = Field(1000, ge=100, le=100_000)
    mc_frequency: str = Field("15min", pattern=r"^\d+(min|h)$")
    block_length: Int | None = Field(None, ge=1)
    seed: Int = Field(7, ge=0)
    regime_window_bars: Int = Field(240, ge=40)
    sweep: Bool = True
    sweep_days: Float = Field(2.0, gt=0, le=365, description="the sweep re-runs the first N days of the backtest")


class GateConfig(_Section):
    """The edge gate (``lbml.research.gate``): trade a model only when its out-of-fold trades, net of every
    cost, show a significant edge."""

    enabled: Bool = True
    statistic: Literal["dsr", "psr"] = Field("dsr", description="deflated (true trial count) or probabilistic Sharpe")
    min_probability: Float = Field(0.95, gt=0, lt=1, description="the statistic's minimum (a probability)")
    min_trades: Int = Field(20, ge=4, description="out-of-fold trades the evidence needs at the least")


class FeedGuardConfig(_Section):
    """Checks on every live feed message before it reaches the node (``lbml.live.feed_guard``).

    A message that fails is quarantined: skipped, counted by reason and journaled in the state
    folder (``quarantine.jsonl``). The session stops only when more than ``max_bad_share`` of the
    last ``rate_window`` messages were quarantined.
    """

    max_message_bytes: Int = Field(
        65_536, ge=256, le=16 * 1024 * 1024, description="longer messages are not parsed"
    )
    max_nesting: Int = Field(8, ge=2, le=64, description="JSON nested deeper than this is not parsed")
    max_jump: Float = Field(
        0.10, gt=0, le=10,
        description="a price more than this fraction away from the symbol's last good price is a suspect jump",
    )
    confirm_after: Int = Field(
        3, ge=1, le=1000,
        description="suspect jumps (price or time) are accepted from the confirm_after-th consecutive agreeing one",
    )
    max_gap_s: Float = Field(
        300.0, gt=0, description="an event more than this after the last good one is a suspect jump"
    )
    max_late_ms: Float = Field(
        5000.0, ge=0,
        description="an event at most this before the last good one is stamped at its time; earlier: quarantined",
    )
    max_ahead_of_clock_s: Float = Field(
        60.0, gt=0, description="event times later than the wall clock plus this are quarantined"
    )
    max_behind_clock_s: Float | None = Field(
        None, gt=0,
        description="event times earlier than the wall clock minus this are quarantined (off: feeds may replay history)",
    )
    max_abs_funding_rate: Float = Field(
        0.05, gt=0, le=1, description="funding rates per settlement beyond ± this are quarantined"
    )
    rate_window: Int = Field(1000, ge=10, le=10_000_000, description="messages in the window of the bad-message rate")
    max_bad_share: Float = Field(
        0.1, gt=0, le=1, description="stop when more than this share of the last rate_window messages was quarantined"
    )
    journal_raw_bytes: Int = Field(
        512, ge=0, le=65_536, description="bytes of each quarantined message kept in the journal"
    )


class RetrainConfig(_Section):
    """``[paper.retrain]``: retrain the paper session's model on the latest bars it has seen
    (``lbml.live.retrain``): when the drift monitor flags drift and/or every ``every_days`` of feed
    time. The candidate replaces the model only if it passes the edge gate (``[gate]``)."""

    on_drift: Bool = Field(False, description="retrain when a drift check flags drift")
    every_days: Float | None = Field(None, gt=0, le=365, description="retrain every this many days of feed time")
    window_bars: Int | None = Field(None, ge=300, description="train on the last this many bars (or window_days)")
    window_days: Float | None = Field(None, gt=0, le=3650, description="train on the last this many days (or window_bars)")
    min_bars_between: Int = Field(60, ge=1, description="bars from one retrain's trigger to the next one's at the least")

    @model_validator(mode="after")
    def _one_window_and_a_trigger(self) -> "RetrainConfig":
        if (self.window_bars is None) == (self.window_days is None):
            raise ValueError("set exactly one of window_bars and window_days")
        if not self.on_drift and self.every_days is None:
            raise ValueError("set on_drift = true and/or every_days: nothing would trigger a retrain")
        return self


class PaperConfig(_Section):
    """Paper trading (``lbml paper``)."""

    feed_guard: FeedGuardConfig = FeedGuardConfig()
    retrain: RetrainConfig | None = None


class ReportConfig(_Section):
    tearsheet: Bool = True
    periods_per_year: Int = Field(365, ge=1)


# Fields that only some configurations read: (section, fields, is it read?, by what). A field the chosen
# configuration does not read, set away from its default, would silently do nothing: it is an error.
_USERS: tuple[tuple[str, tuple[str, ...], Any, str], ...] = (
    ("costs", ("borrow_apr_quote", "borrow_apr_base", "borrow_interval_minutes"),
     lambda s: s.leverage.model == "none",
     "only leverage.model = 'none' charges venue borrow (exchange_margin pays funding, aave_lending its "
     "leverage.borrow_rate)"),
    ("costs", ("slippage_vol_k",), lambda s: s.costs.slippage_model == "volatility",
     "only costs.slippage_model = 'volatility' reads it"),
    ("leverage", ("margin_leverage", "maintenance_margin_rate", "liquidation_fee", "funding"),
     lambda s: s.leverage.model == "exchange_margin", "only leverage.model = 'exchange_margin' reads it"),
    ("leverage", ("funding_multiplier",), lambda s: s.leverage.model == "exchange_margin" and s.leverage.funding,
     "only leverage.model = 'exchange_margin' with funding = true reads it"),
    ("leverage", ("ltv", "liquidation_threshold", "liquidation_bonus", "close_factor", "full_close_hf", "borrow_rate",
                  "stress_multiplier", "accrual_minutes"),
     lambda s: s.leverage.model == "aave_lending", "only leverage.model = 'aave_lending' reads it"),
    ("leverage", ("borrow_apr",), lambda s: s.leverage.model == "aave_lending" and s.leverage.borrow_rate != "utilisation",
     "only aave_lending with borrow_rate 'constant' or 'schedule' reads it"),
    ("leverage", ("rate_schedule",), lambda s: s.leverage.model == "aave_lending" and s.leverage.borrow_rate != "constant",
     "only aave_lending with borrow_rate 'schedule' or 'utilisation' reads it"),
    ("leverage", ("utilisation", "curve_base", "curve_slope1", "curve_slope2", "optimal_utilisation"),
     lambda s: s.leverage.model == "aave_lending" and s.leverage.borrow_rate == "utilisation",
     "only aave_lending with borrow_rate = 'utilisation' reads it"),
)


class Scenario(_Section):
    """One experiment, fully described."""

    name: str = Field(pattern=r"^[\w.-]{1,64}$")
    description: str = ""
    data: DataConfig = Field(description="required: where the market data comes from")
    split: SplitConfig = SplitConfig()
    features: FeaturesConfig = FeaturesConfig()
    labels: LabelsConfig = LabelsConfig()
    model: ModelConfig = ModelConfig()
    validation: ValidationConfig = ValidationConfig()
    walkforward: WalkForwardConfig = WalkForwardConfig()
    strategy: StrategyConfig = StrategyConfig()
    costs: CostsConfig = CostsConfig()
    venue: VenueConfig = VenueConfig()
    report: ReportConfig = ReportConfig()
    leverage: LeverageConfig = LeverageConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    gate: GateConfig = GateConfig()
    paper: PaperConfig = PaperConfig()

    @model_validator(mode="after")
    def _no_ineffective_settings(self) -> "Scenario":
        for section, names, used, why in _USERS:
            if used(self):
                continue
            values = getattr(self, section)
            for name in names:
                value, default = getattr(values, name), type(values).model_fields[name].default
                if value != default:
                    raise PydanticCustomError(
                        "ineffective_setting",
                        "{key} = {value} has no effect here: {why}; remove it or choose a configuration that uses it",
                        {"key": f"{section}.{name}", "value": repr(value), "why": why},
                    )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def content_hash(self) -> str:
        """Return a stable hash of the resolved scenario (for trial registries and manifests)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_data(self, **changes: Any) -> "Scenario":
        """Return a copy with some ``data`` fields replaced (e.g. paths from ``--data``)."""
        data = self.data.model_dump() | changes
        return self.model_copy(update={"data": DataConfig.model_validate(data)})


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raise ``ConfigError`` with a one-line reason.

    Relative data paths are resolved against the scenario file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: scenario file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a scenario file (not UTF-8 text)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the scenario file ({exc.strerror or exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw.setdefault("name", path.stem)
    scenario = parse_scenario(raw, source=str(path))
    return scenario.model_copy(update={"data": scenario.data.resolved(path.parent)})


def parse_scenario(raw: dict[str, Any], source: str = "<scenario>") -> Scenario:
    data = raw.get("data")
    if not isinstance(data, dict) or "source" not in data:
        raise ConfigError(
            f"{source}: data.source: required (the scenario must name its market data: source = \"files\" with "
            "data.paths, or source = \"synthetic\" for the embedded synthetic market)"
        )
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
