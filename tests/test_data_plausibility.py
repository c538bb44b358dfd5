"""Data that does not fit the scenario is refused on load: wrong symbol, implausible price level,
holes and spikes beyond ``[data]`` limits; the real shared files pass the defaults."""

import gzip

import pytest

from lbml.data.importers import load_file
from lbml.data.plausibility import YEARLY_RANGES, same_symbol
from lbml.data.sources import load_market
from lbml.data.validate import validate
from lbml.errors import DataError
from lbml.scenario import DataConfig

from .conftest import shared_file

SPOT_2021 = ("klines_1m", "binance_spot_2021-04-02_to_2021-05-14")


def _config(**fields) -> DataConfig:
    return DataConfig(**({"source": "files", "reference_symbol": None} | fields))


def _rewrite(src, dst, edit):
    """Copy a gzip CSV of klines to ``dst`` (plain CSV), passing its data rows through ``edit``."""
    lines = gzip.open(src, "rt").read().splitlines()
    dst.write_text("\n".join([lines[0], *edit(lines[1:])]) + "\n")
    return dst


@pytest.mark.parametrize(
    "symbol, paths, reference, reference_paths",
    [
        ("BNBUSDT", (*SPOT_2021, "BNBUSDT-1m.csv.gz"), "BTCUSDT", (*SPOT_2021, "BTCUSDT-1m.csv.gz")),
        ("ETHUSDT", (*SPOT_2021, "original", "ETH_USDT-1m.json"), None, None),
        ("BTCUSDT", ("klines_1m", "bybit_linear_2025-05-30_to_2025-06-29", "BTCUSDT_1m.csv"),
         "ETHUSDT", ("klines_1m", "bybit_linear_2025-05-30_to_2025-06-29", "ETHUSDT_1m.csv")),
        ("BNBUSDT", ("klines_1m", "binance_spot_2026-03-23_to_2026-04-22", "BNBUSDT-1m.csv.gz"), None, None),
        ("BTCUSDT", ("klines_format_reference", "ftx_btc-perp-20211231-20220201_1m.csv"), None, None),
    ],
)
def test_real_markets_pass_the_defaults(registry, symbol, paths, reference, reference_paths):
    # the 2021 files hold the 150- and 284-minute outages and the May 2021 sell-off
    config = _config(symbol=symbol, paths=(shared_file(*paths),), reference_symbol=reference,
                     reference_paths=(shared_file(*reference_paths),) if reference_paths else ())
    market = load_market(config, registry)
    assert len(market[symbol].bars) > 40_000


def test_an_ethusdt_file_for_bnbusdt_is_refused(registry):
    eth = shared_file(*SPOT_2021, "ETHUSDT-1m.csv.gz")
    with pytest.raises(DataError, match=r"says ETHUSDT, but it is listed in data.paths for BNBUSDT"):
        load_market(_config(symbol="BNBUSDT", paths=(eth,)), registry)
    btc = shared_file(*SPOT_2021, "BTCUSDT-1m.csv.gz")
    with pytest.raises(DataError, match=r"says ETHUSDT, but it is listed in data.reference_paths for BTCUSDT"):
        load_market(_config(symbol="BNBUSDT", paths=(shared_file(*SPOT_2021, "BNBUSDT-1m.csv.gz"),),
                            reference_symbol="BTCUSDT", reference_paths=(eth,)), registry)
    assert load_market(_config(symbol="BTCUSDT", paths=(btc,)), registry)


def test_a_funding_file_of_another_symbol_is_refused(registry):
    bnb = shared_file(*SPOT_2021, "BNBUSDT-1m.csv.gz")
    btc = shared_file(*SPOT_2021, "BTCUSDT-1m.csv.gz")
    eth_funding = shared_file("funding", "ETHUSDT_funding_rate_8h.csv.gz")
    btc_funding = shared_file("funding", "BTCUSDT_funding_rate_8h.csv.gz")
    config = _config(symbol="BNBUSDT", paths=(bnb,), reference_symbol="BTCUSDT", reference_paths=(btc,))
    with pytest.raises(DataError, match=r"says ETHUSDT, but data.funding_paths are for BNBUSDT or BTCUSDT"):
        load_market(config.model_copy(update={"funding_paths": (eth_funding,)}), registry)
    market = load_market(config.model_copy(update={"funding_paths": (btc_funding,)}), registry)
    assert set(market.funding) == {"BTCUSDT"}  # the reference symbol's funding


def test_a_file_without_a_symbol_is_checked_by_its_price_level(registry, tmp_path):
    eth = _rewrite(shared_file(*SPOT_2021, "ETHUSDT-1m.csv.gz"), tmp_path / "prices.csv", lambda rows: rows)
    with pytest.raises(DataError, match=r"median price 2431.24 in 2021 is not plausible for BNBUSDT"):
        load_market(_config(symbol="BNBUSDT", paths=(eth,)), registry)
    assert load_market(_config(symbol="ETHUSDT", paths=(eth,)), registry)  # the right symbol passes
    assert load_market(_config(symbol="ADAUSDT", paths=(eth,)), registry)  # no reference prices: not checked


def test_a_200_day_hole_is_refused_unless_allowed(registry, tmp_path):
    shift = 200 * 86_400_000

    def hole(rows):
        half = len(rows) // 2
        return rows[:half] + [f"{int(r.split(',', 1)[0]) + shift},{r.split(',', 1)[1]}" for r in rows[half:]]

    path = _rewrite(shared_file(*SPOT_2021, "BNBUSDT-1m.csv.gz"), tmp_path / "BNBUSDT-1m.csv", hole)
    with pytest.raises(DataError, match=r"BNBUSDT has no bars from .* \(200 days missing\), longer than "
                                        r"data.max_gap_minutes = 1440"):
        load_market(_config(symbol="BNBUSDT", paths=(path,)), registry)
    allowed = load_market(_config(symbol="BNBUSDT", paths=(path,), max_gap_minutes=201 * 1440), registry)
    assert len(allowed["BNBUSDT"].bars) == 61_273


def test_a_100x_spike_is_refused_unless_allowed_and_data_validate_flags_it(registry, tmp_path):
    def spike(rows):
        fields = rows[1000].split(",")
        fields[2] = str(float(fields[2]) * 100)  # the high
        return rows[:1000] + [",".join(fields)] + rows[1001:]

    path = _rewrite(shared_file(*SPOT_2021, "BNBUSDT-1m.csv.gz"), tmp_path / "BNBUSDT-1m.csv", spike)
    with pytest.raises(DataError, match=r"BNBUSDT moves 100x within the bar at 2021-04-02 16:41:00\+00:00 "
                                        r"\(more than data.max_bar_move = 2\)"):
        load_market(_config(symbol="BNBUSDT", paths=(path,)), registry)
    assert load_market(_config(symbol="BNBUSDT", paths=(path,), max_bar_move=200.0), registry)
    finding = validate(load_file(path)).finding("spike")
    assert finding is not None and finding.severity == "warning" and finding.count == 1
    assert finding.first_ts.isoformat() == "2021-04-02T16:41:00+00:00"
    assert validate(load_file(shared_file(*SPOT_2021, "BNBUSDT-1m.csv.gz"))).finding("spike") is None


def test_data_validate_flags_a_spike_in_trades(tmp_path):
    src = shared_file("trades", "tardis_binance-futures_BTCUSDT_trades_2020-02-22.csv")
    lines = src.read_text().splitlines()
    fields = lines[500].split(",")
    fields[6] = str(float(fields[6]) * 100)
    lines[500] = ",".join(fields)
    bad = tmp_path / "tardis_BTCUSDT_trades.csv"
    bad.write_text("\n".join(lines) + "\n")
    finding = validate(load_file(bad)).finding("spike")
    assert finding is not None and finding.count == 2  # away and back
    assert validate(load_file(src)).finding("spike") is None


def test_symbol_names_compare_without_separators_and_perpetual_suffix():
    assert same_symbol("BNB_USDT", "BNBUSDT") and same_symbol("bnb/usdt", "BNBUSDT")
    assert same_symbol("BTC-PERP", "BTCUSDT") and not same_symbol("BTC-PERP", "ETHUSDT")
    assert not same_symbol("ETHUSDT", "BNBUSDT")


def test_the_price_table_covers_the_shared_markets_with_room():
    # every real file of BTC, ETH and BNB sits inside its year's recorded range (so inside the band)
    for name, base in (("BTCUSDT-1m.csv.gz", "BTC"), ("ETHUSDT-1m.csv.gz", "ETH"), ("BNBUSDT-1m.csv.gz", "BNB")):
        bars = load_file(shared_file(*SPOT_2021, name)).frame
        low, high = YEARLY_RANGES[base][2021]
        assert low <= bars["low"].min() and bars["high"].max() <= high


@pytest.mark.parametrize("folder", [SPOT_2021, ("klines_1m", "bybit_linear_2025-05-30_to_2025-06-29")])
@pytest.mark.parametrize("base", ["BTC", "ETH", "BNB"])
def test_the_yearly_range_table_holds_every_real_price_in_the_shared_data(folder, base):
    # The table is reference data written by hand: check it against the real files it covers, with
    # no band at all (every 1-minute low and high of the year's files inside the year's range).
    name = f"{base}USDT-1m.csv.gz" if folder == SPOT_2021 else f"{base}USDT_1m.csv"
    bars = load_file(shared_file(*folder, name)).frame
    for year, rows in bars.groupby(bars.index.year):
        low, high = YEARLY_RANGES[base][int(year)]
        assert low <= rows["low"].min() and rows["high"].max() <= high, (base, year)
