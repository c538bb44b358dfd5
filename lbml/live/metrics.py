"""Prometheus metrics of a running paper session (``lbml paper --metrics-port P``).

The exporter reads the session's ``PaperStatus`` (and the feed plan) when it is scraped, so every
gauge shows what the state keeper last committed: ``lbml_paper_equity`` is the equity column of the
state database's equity row number ``lbml_paper_bars_total``. The one thing the status cannot give
is a distribution: ``lbml_paper_bar_latency_seconds`` (bar close to prediction) observes the latency
of every signal this process commits (the ``latency_us`` column of the ``signals`` table; signals
re-verified while a restarted session replays are not observed again).

The registry is the exporter's own (never ``prometheus_client``'s global one) and the server binds
loopback unless a host is given.
"""

import ipaddress
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from lbml.errors import ConfigError
from lbml.live.status import PaperStatus

PREFIX = "lbml_paper"
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class MetricsConfig:
    """Where the metrics endpoint listens: ``http://HOST:PORT/metrics`` (port 0: any free port)."""

    port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--metrics-port must be in 0..65535, got {self.port}")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ConfigError(f"--metrics-host must be an IP address, got {self.host!r}") from None


class PaperMetrics:
    """The metrics of one session; ``start`` serves them, ``stop`` closes the server."""

    def __init__(self, status: PaperStatus, feed_plan) -> None:
        self._status = status
        self._plan = feed_plan
        self.registry = CollectorRegistry(auto_describe=True)
        self._latency = Histogram(f"{PREFIX}_bar_latency_seconds", "Bar close to prediction, per bar",
                                  buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.registry.register(_StatusCollector(status, feed_plan))
        self._server = None
        self._thread = None
        self.url: str | None = None

    def observe_signals(self, rows: Sequence[tuple]) -> None:
        """Observe the latency of newly committed ``signals`` rows ``(seq, ts, p, close, latency_us)``."""
        for row in rows:
            if row[4] is not None:
                self._latency.observe(row[4] / 1e6)

    def start(self, config: MetricsConfig) -> str:
        try:
            self._server, self._thread = start_http_server(config.port, addr=config.host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"metrics endpoint: cannot listen on {config.host}:{config.port} ({exc})") from None
        host, port = self._server.server_address[:2]
        self.url = f"http://{_url_host(host)}:{port}/metrics"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _StatusCollector:
    """Builds the gauges from the status at every scrape."""

    def __init__(self, status: PaperStatus, plan) -> None:
        self._status = status
        self._plan = plan

    def describe(self) -> Iterable[Metric]:
        return []  # values exist only at scrape time

    def collect(self) -> Iterable[Metric]:
        s = self._status
        yield _gauge("equity", "Account equity (balance + unrealized PnL) at the last committed bar", s.equity)
        yield _gauge("balance", "Account balance at the last committed bar", s.balance)
        yield _gauge("position", "Signed open position in base units", s.position)
        yield _gauge("exposure", "Notional of the open position in quote currency", s.exposure)
        yield _gauge("leverage", "Exposure over equity", s.leverage)
        yield _gauge("health_factor", "Health factor of the position (+Inf when flat or without liquidation risk)",
                     math.inf if s.health_factor is None else s.health_factor)
        yield _counter("bars", "Bars committed to the state database", s.bars)
        yield _counter("items", "Feed items processed (the checkpoint position)", s.items)
        yield _counter("fills", "Fills committed to the state database", s.fills)
        yield _counter("signals", "Predictions made (the signals table's last seq)", s.last_signal_seq)
        yield _counter("signals_published", "Signals this process sent on the ZeroMQ stream", s.signals_published)
        if s.signal_peers is not None:
            yield _gauge("signal_subscribers", "Connections to the signal stream's socket (subscribers)", s.signal_peers)
        yield _counter("bad_feed_messages", "Feed messages quarantined by the feed guard", s.bad_messages)
        by_reason = CounterMetricFamily(f"{PREFIX}_bad_feed_messages_by_reason",
                                        "Feed messages quarantined by the feed guard, by reason", labels=["reason"])
        for reason, count in sorted(s.feed_quarantine.items()):
            by_reason.add_metric([reason], float(count))
        yield by_reason
        yield _gauge("market_timestamp_seconds", "Event time of the last committed bar (Unix seconds)",
                     s.market_ts / 1e9)
        idle = time.monotonic() - self._plan.last_event_wall
        yield _gauge("feed_idle_seconds", "Wall-clock seconds since the feed delivered its last item", idle)
        last_ts = self._plan.last_event_ts
        yield _gauge("feed_lag_seconds", "Wall clock minus the event time of the last feed item "
                     "(transport delay on a live feed; the replayed history's age on a replay)",
                     time.time() - last_ts / 1e9 if last_ts else math.nan)
        yield _gauge("feed_stalled", "1 while the feed has been silent longer than the stall limit", s.feed_stalled)
        yield _gauge("degraded", "1 while the model guard withholds predictions", bool(s.degraded))
        yield _gauge("replaying", "1 while a restarted session rebuilds its state", s.replaying)
        yield _gauge("drift_flagged", "1 when the last drift check rejected same-distribution", s.drift_flagged)
        yield _gauge("drift_features", "Features the last drift check rejected (Holm-adjusted)", s.drift_features)
        yield _gauge("drift_min_adjusted_p", "Smallest Holm-adjusted p-value of the last drift check",
                     math.nan if s.drift_min_p is None else s.drift_min_p)
        info = InfoMetricFamily(f"{PREFIX}_model", "The model the session trades")
        info.add_metric([], {"model_id": s.model_id, "feature_schema_hash": s.feature_schema_hash,
                             "edge_gate": s.edge_gate})
        yield info
        state = InfoMetricFamily(f"{PREFIX}_state", "The session's state")
        state.add_metric([], {"state": s.state, "degraded_reason": s.degraded or ""})
        yield state


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(value))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=float(value))
