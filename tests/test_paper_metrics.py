"""The Prometheus endpoint of a real paper session, scraped over HTTP, against its state database."""

import json
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lbml.errors import ConfigError
from lbml.live.metrics import MetricsConfig
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows import prepare, train_model

from .conftest import without_calibration, without_edge_gate
from .paper_support import state_rows
from .watch_support import (
    ControlledFeed,
    events_through_bar,
    free_port,
    read_status,
    scrape,
    session_events,
    start_paper,
    wait_for,
)

# The test waits on a child process and sockets: it fails after 300 s instead of hanging.
pytestmark = pytest.mark.timeout(300)

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
    proc = start_paper(s["file"], s["model"], state, endpoint, tmp_path / "paper.log", "--metrics-port", str(port))
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

        feed.send(s["events"][n:])
        feed.end()
        assert proc.wait(timeout=180) == 0, (tmp_path / "paper.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feed.close()


def test_metrics_settings_are_checked():
    with pytest.raises(ConfigError, match="metrics-port"):
        MetricsConfig(port=70000)
    with pytest.raises(ConfigError, match="metrics-host"):
        MetricsConfig(port=0, host="localhost:80")
    assert MetricsConfig(port=9100).host == "127.0.0.1"
