"""Watching a real paper session: its Prometheus endpoint scraped over HTTP, and its dashboard
rendered in a real headless Chromium, both checked against the state database read here."""

import json
import math
import os
import subprocess
import sys

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from lbml.errors import ConfigError
from lbml.live.metrics import MetricsConfig
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows.prepare import prepare, train_model

from .conftest import without_calibration, without_edge_gate
from .paper_support import state_rows
from .watch_support import (
    ROOT,
    ControlledFeed,
    events_through_bar,
    free_port,
    read_status,
    scrape,
    session_events,
    start_paper,
    wait_for,
)

# The tests wait on child processes, sockets and a browser: each fails after 600 s instead of hanging
# (the first one also trains the shared model).
pytestmark = pytest.mark.timeout(600)

BARS = 250  # past the first drift check (every 240 predictions)


@pytest.fixture(scope="module")
def session_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("watch")
    scenario = without_edge_gate(without_calibration(load_scenario("scenarios/default.toml").with_data(days=3, edge=0.3)))
    scenario_file = root / "three_days.toml"
    scenario_file.write_text(scenario.to_toml())
    registry = load_registry()
    prepared = prepare(scenario, registry)
    model = root / "model"
    train_model(prepared, registry, model)
    events = session_events(scenario, registry, prepared)
    return {"root": root, "scenario": scenario, "file": scenario_file, "model": model, "events": events,
            "bar_ns": prepared.market.bar_minutes * 60_000_000_000}


def _samples(text: str) -> dict[str, float | dict]:
    values: dict[str, float | dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_info"):
                values[sample.name] = sample.labels
            elif "le" not in sample.labels:
                values[sample.name] = sample.value
    return values


def test_metrics_of_a_running_session_equal_its_state_database(session_setup, tmp_path):
    s = session_setup
    state = tmp_path / "state"
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    feed = ControlledFeed(endpoint)
    publish = f"tcp://127.0.0.1:{free_port()}"
    dashboard_port = free_port()
    proc = start_paper(s["file"], s["model"], state, endpoint, tmp_path / "paper.log", "--metrics-port", str(port),
                       "--dashboard-port", str(dashboard_port), publish=publish)
    ctx = zmq.Context()
    subscriber = ctx.socket(zmq.SUB)  # a subscriber of the signal stream, connected before the session binds
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.connect(publish)
    try:
        feed.wait_subscriber(120)
        n = events_through_bar(s["events"], s["scenario"].data.symbol, s["bar_ns"], BARS)
        feed.send(s["events"][:n])
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _samples(scrape(url)).get("lbml_paper_bars_total") == BARS, 120, f"{BARS} bars committed")
        # Idle: status.json rewritten (once a second) after the last bar, showing the same bars.
        wait_for(lambda: (read_status(state) or {}).get("bars") == BARS
                 and _samples(scrape(url))["lbml_paper_feed_idle_seconds"] > 1.0, 60, "the session to be idle")
        m = _samples(scrape(url))
        status = read_status(state)

        rows = state_rows(state, "SELECT equity, balance, exposure, leverage, health FROM equity ORDER BY i")
        assert len(rows) == m["lbml_paper_bars_total"] == BARS
        equity, balance, exposure, leverage, health = rows[-1]
        assert m["lbml_paper_equity"] == equity == status["equity"]
        assert m["lbml_paper_balance"] == balance
        assert m["lbml_paper_exposure"] == exposure == status["exposure"]
        assert m["lbml_paper_leverage"] == leverage == status["leverage"]
        if health is None or math.isinf(health):
            assert math.isinf(m["lbml_paper_health_factor"]) and status["health_factor"] is None
        else:
            assert m["lbml_paper_health_factor"] == health == status["health_factor"]
        position = sum((q if side == "BUY" else -q) for side, q in state_rows(state, "SELECT side, quantity FROM fills"))
        assert m["lbml_paper_position"] == pytest.approx(position, abs=1e-9)

        (fills,), = state_rows(state, "SELECT COUNT(*) FROM fills")
        assert m["lbml_paper_fills_total"] == fills == status["fills"]
        assert fills > 0  # the planted edge trades within the window
        (n_signals, last_seq, latency_sum, with_latency), = state_rows(
            state, "SELECT COUNT(*), MAX(seq), SUM(latency_us), COUNT(latency_us) FROM signals")
        assert m["lbml_paper_signals_total"] == n_signals == last_seq == BARS
        assert m["lbml_paper_signals_published_total"] == n_signals  # a fresh session publishes every signal
        assert m["lbml_paper_bar_latency_seconds_count"] == with_latency == n_signals
        assert m["lbml_paper_bar_latency_seconds_sum"] == pytest.approx(latency_sum / 1e6, rel=1e-9)
        (checkpoint,), = state_rows(state, "SELECT value FROM meta WHERE key = 'checkpoint'")
        assert m["lbml_paper_items_total"] == json.loads(checkpoint)["pos"] == status["items"]

        (session,), = state_rows(state, "SELECT value FROM meta WHERE key = 'session'")
        model_id = json.loads(session)["model_id"]
        assert m["lbml_paper_model_info"]["model_id"] == model_id == status["model_id"]
        assert m["lbml_paper_state_info"]["state"] == status["state"] == "live"

        drift = state_rows(state, "SELECT n_drifted, flagged, detail FROM drift ORDER BY i")
        assert len(drift) == 1  # one check after 240 predictions
        assert m["lbml_paper_drift_features"] == drift[-1][0] == status["drift_features"]
        assert m["lbml_paper_drift_flagged"] == drift[-1][1] == int(status["drift_flagged"])
        assert m["lbml_paper_bad_feed_messages_total"] == status["bad_messages"] == 0
        assert m["lbml_paper_degraded"] == 0 and m["lbml_paper_feed_stalled"] == 0

        # The session serves the dashboard's data too: the same numbers.
        served = json.loads(scrape(f"http://127.0.0.1:{dashboard_port}/api/state"))
        assert served["counts"]["bars"] == BARS and served["counts"]["fills"] == fills
        assert served["summary"]["equity"] == equity and served["condition"] == "live"

        # Subscribers: the connected one, then none once it leaves (counted at each heartbeat).
        assert m["lbml_paper_signal_subscribers"] == 1
        subscriber.close(0)
        wait_for(lambda: _samples(scrape(url))["lbml_paper_signal_subscribers"] == 0, 60, "the subscriber to leave")

        feed.send(s["events"][n:])
        feed.end()
        assert proc.wait(timeout=180) == 0, (tmp_path / "paper.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feed.close()
        subscriber.close(0)
        ctx.term()


def test_metrics_settings_are_checked():
    with pytest.raises(ConfigError, match="metrics-port"):
        MetricsConfig(port=70000)
    with pytest.raises(ConfigError, match="metrics-host"):
        MetricsConfig(port=0, host="localhost:80")
    assert MetricsConfig(port=9100).host == "127.0.0.1"


# -- the dashboard ----------------------------------------------------------------------------------
CARDS = ("equity", "balance", "position", "exposure", "leverage", "health", "bars", "signals", "fills", "trades",
         "total-costs", "drift")
READ_PAGE = """(() => {
  const card = (id) => [document.getElementById(id).textContent, document.getElementById(id).dataset.value];
  return {
    cards: Object.fromEntries(%s.map((id) => [id, card(id)])),
    condition: document.getElementById("condition").textContent,
    costs: Object.fromEntries([...document.querySelectorAll("#costs tr")].map(
      (tr) => [tr.dataset.kind, tr.children[1].textContent])),
    signal: [...document.querySelector("#signals-table tbody tr").children].map((td) => td.textContent),
    fills_rows: document.querySelectorAll("#fills-table tbody tr").length,
    markers: document.querySelectorAll("#chart-price path, #chart-price circle").length,
    equity_points: document.querySelector("#chart-equity polyline").getAttribute("points").split(" ").length,
    error: document.getElementById("error").textContent,
  };
})()""" % json.dumps(CARDS)


def _expected(state) -> dict:
    """What the page must show, read from the state database here (not through lbml)."""
    equity, balance, exposure, leverage, health = state_rows(
        state, "SELECT equity, balance, exposure, leverage, health FROM equity ORDER BY i DESC LIMIT 1")[0]
    fills = state_rows(state, "SELECT side, quantity, commission FROM fills ORDER BY i")
    costs: dict[str, float] = {}
    for kind, amount in state_rows(state, "SELECT kind, amount FROM costs ORDER BY i"):
        costs[kind] = costs.get(kind, 0.0) + amount
    costs["commission"] = sum(c for _, _, c in fills)
    (n_bars,), = state_rows(state, "SELECT COUNT(*) FROM equity")
    (n_signals,), = state_rows(state, "SELECT COUNT(*) FROM signals")
    (n_trades,), = state_rows(state, "SELECT COUNT(*) FROM trades")
    seq, probability = state_rows(state, "SELECT seq, probability FROM signals ORDER BY seq DESC LIMIT 1")[0]
    drift = state_rows(state, "SELECT n_drifted, n_features FROM drift ORDER BY i DESC LIMIT 1")
    return {"equity": equity, "balance": balance, "exposure": exposure, "leverage": leverage,
            "health": None if health is None or math.isinf(health) else health,
            "position": sum(q if side == "BUY" else -q for side, q, _ in fills), "fills": len(fills),
            "bars": n_bars, "signals": n_signals, "trades": n_trades, "costs": costs,
            "total_costs": sum(costs.values()), "last_signal": (seq, probability), "drift": drift[0] if drift else None}


def _check_page(page: dict, want: dict, currency: str) -> None:
    cards = page["cards"]
    assert page["error"] == ""
    assert cards["equity"] == [f"{want['equity']:,.2f} {currency}", repr(want["equity"])]
    assert cards["balance"] == [f"{want['balance']:,.2f}", repr(want["balance"])]
    assert cards["exposure"] == [f"{want['exposure']:,.2f}", repr(want["exposure"])]
    assert float(cards["leverage"][1]) == want["leverage"] and cards["leverage"][0] == f"{want['leverage']:,.3f}x"
    assert cards["health"][0] == ("∞" if want["health"] is None else f"{want['health']:,.2f}")
    assert float(cards["position"][1]) == pytest.approx(want["position"], abs=1e-9)
    assert cards["position"][0] == f"{want['position']:,.4f}"
    for key in ("bars", "signals", "fills", "trades"):
        assert cards[key] == [str(want[key])] * 2, key
    assert float(cards["total-costs"][1]) == pytest.approx(want["total_costs"], rel=1e-12)
    assert cards["total-costs"][0] == f"{want['total_costs']:,.2f}"
    assert {k: v for k, v in page["costs"].items() if k != "total"} == {k: f"{v:,.4f}" for k, v in want["costs"].items()}
    seq, probability = want["last_signal"]
    assert page["signal"][0] == str(seq) and page["signal"][2] == f"{probability:.4f}"
    if want["drift"] is not None:
        assert cards["drift"][0] == f"{want['drift'][0]} / {want['drift'][1]}"
    assert page["fills_rows"] == min(20, want["fills"]) and page["markers"] == min(500, want["fills"])
    assert page["equity_points"] == want["bars"]  # short sessions are drawn point for point


def _rendered_bars(browser) -> int | None:
    value = browser.evaluate("document.getElementById('bars').dataset.value")
    return int(value) if value else None


def _wait_idle(state, bars: int) -> None:
    wait_for(lambda: len(state_rows(state, "SELECT i FROM equity")) == bars, 120, f"{bars} bars committed")
    wait_for(lambda: (read_status(state) or {}).get("bars") == bars, 30, "status.json to show them")


def test_dashboard_in_chromium_shows_the_state_database_live_and_after_a_crash(session_setup, tmp_path):
    from .chromium_support import Chromium

    s = session_setup
    state = tmp_path / "state"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    symbol, currency = s["scenario"].data.symbol, "USDT"
    feed = ControlledFeed(endpoint)
    proc = start_paper(s["file"], s["model"], state, endpoint, tmp_path / "paper.log")
    dashboard = browser = None
    try:
        feed.wait_subscriber(120)
        first = events_through_bar(s["events"], symbol, s["bar_ns"], 120)
        feed.send(s["events"][:first])
        _wait_idle(state, 120)

        port = free_port()
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "lbml", "dashboard", str(state), "--port", str(port), "--interval", "0.25"],
            cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        assert dashboard.stdout.readline().strip().endswith(f"http://127.0.0.1:{port}/")
        browser = Chromium(tmp_path / "chromium")
        browser.open(f"http://127.0.0.1:{port}/")
        wait_for(lambda: _rendered_bars(browser) == 120, 60, "the page to render 120 bars")
        page = browser.evaluate(READ_PAGE)
        assert page["condition"] == "live"
        _check_page(page, _expected(state), currency)
        browser.screenshot(tmp_path / "live.png")

        # The page follows the session without a reload.
        second = events_through_bar(s["events"], symbol, s["bar_ns"], 260)
        feed.send(s["events"][first:second])
        _wait_idle(state, 260)
        wait_for(lambda: _rendered_bars(browser) == 260, 60, "the page to follow to 260 bars")
        page = browser.evaluate(READ_PAGE)
        want = _expected(state)
        assert want["drift"] is not None  # a drift check ran at 240 predictions
        _check_page(page, want, currency)

        # kill -9: the page says so and still shows everything committed, also when loaded afresh.
        proc.kill()
        proc.wait()
        wait_for(lambda: browser.evaluate("document.getElementById('condition').textContent") == "dead", 60,
                 "the page to report the dead session")
        browser.open(f"http://127.0.0.1:{port}/")
        wait_for(lambda: _rendered_bars(browser) == 260, 60, "the reloaded page")
        page = browser.evaluate(READ_PAGE)
        assert page["condition"] == "dead"
        _check_page(page, _expected(state), currency)
        browser.screenshot(tmp_path / "after_crash.png")
        for name in ("live.png", "after_crash.png"):
            png = (tmp_path / name).read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    finally:
        if browser is not None:
            browser.close()
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feed.close()


def test_dashboard_of_a_folder_without_state_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lbml", "dashboard", str(tmp_path), "--port", "0"], cwd=ROOT,
                            env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "not a paper state folder" in result.stderr
