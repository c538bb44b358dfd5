"""The ``lbml`` command line. Each command is a thin wrapper over ``lbml.workflows``.

User errors (``LbmlError``) print one line and exit with code 2; no traceback. A broken invariant
(``InvariantError``, e.g. a position above the exposure cap) prints one line and exits with code 3.
Output refused for lack of space (``StorageError``, or any write failing with ENOSPC / EFBIG /
EDQUOT, or SQLite's "database or disk is full") prints one line and exits with code 4.
"""

import argparse
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from lbml import __version__, outputs
from lbml.errors import ConfigError, InvariantError, LbmlError, StorageError, is_no_space


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        from lbml.settings import load_settings

        settings = load_settings()
        configure_logging(args.log_level or settings.log_level)
        return int(args.func(args, settings) or 0)
    except LbmlError as exc:
        print(f"lbml: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except InvariantError as exc:
        print(f"lbml: invariant broken: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a write the disk refused, wherever it happened: one line, exit 4
        if not is_no_space(exc):
            raise
        where = getattr(exc, "filename", None) or "output"
        print(f"lbml: error: {where}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return StorageError.exit_code
    except KeyboardInterrupt:
        print("lbml: interrupted", file=sys.stderr)
        return 130


def configure_logging(level: str) -> None:
    """Log lines as ``LEVEL logger: message``; Python warnings (lbml's and its libraries') join them.

    A warning is one ``WARNING py.warnings: Category: message (file:line)`` line, shown or hidden by
    the log level like any other, instead of the interpreter's two-line dump on stderr: at
    ``--log-level ERROR`` a command's stderr holds its own lines only. (A library's import-time
    warning filter can be undone by another thread's ``warnings.catch_warnings`` exit, so filters
    alone cannot keep such warnings out.)
    """
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    warnings_log = logging.getLogger("py.warnings")

    def log_warning(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        warnings_log.warning("%s: %s (%s:%s)", category.__name__, text, filename, lineno)

    warnings.showwarning = log_warning


# -- commands -------------------------------------------------------------------------------------
def _cmd_config_show(args, settings) -> int:
    scenario = _scenario(args, settings)
    print(f"# resolved scenario {args.scenario} (hash {scenario.content_hash()})")
    print(scenario.to_toml(), end="")
    return 0


def _cmd_plugins(args, settings) -> int:
    registry = _registry(settings)
    for info in registry.describe():
        print(f"{info.name}  [{info.origin}]")
        for label, names in (("features", info.features), ("models", info.models), ("data sources", info.data_sources)):
            if names:
                print(f"    {label}: {', '.join(names)}")
    return 0


def _cmd_data_generate(args, settings) -> int:
    from lbml.data.synthetic import SyntheticMarketConfig, generate_market, write_market

    out = outputs.folder(args.out, "--out")
    config = SyntheticMarketConfig(days=args.days, seed=args.seed)
    market = generate_market(config, progress=sys.stderr.isatty())
    for path in write_market(market, out, config=config):
        print(path)
    return 0


def _cmd_data_validate(args, settings) -> int:
    from lbml.data.importers import load_file
    from lbml.data.validate import validate

    fatal = False
    for path in args.paths:
        imported = load_file(Path(path))
        report = validate(imported)
        print(f"== {path} ({imported.format}, {imported.kind}, {len(imported.frame)} rows)")
        print(report.to_table())
        fatal = fatal or any(f.severity == "fatal" for f in report.findings)
        for stream_kind, frame in imported.streams.items():  # e.g. an order-book file's quotes
            stream_report = validate(frame, kind=stream_kind, source=f"{path} [{stream_kind}]")
            print(f"== {path} [{stream_kind}] ({len(frame)} rows)")
            print(stream_report.to_table())
            fatal = fatal or any(f.severity == "fatal" for f in stream_report.findings)
    if fatal:
        print("lbml: error: fatal data problems found (see above)", file=sys.stderr)
        return 2
    return 0


def _cmd_data_download(args, settings) -> int:
    from lbml.data.binance_vision import BinanceDataRequest, binance_files, parse_date
    from lbml.data.download import DownloadConfig, download_files

    request = BinanceDataRequest(
        kind=args.kind, symbol=args.symbol, start=parse_date(args.start, "--start"),
        end=parse_date(args.end or args.start, "--end", end=True), period=args.period, interval=args.interval,
        market="usdt_futures" if args.kind == "funding" and args.market is None else args.market or "spot",
    )
    config = DownloadConfig(
        base_url=args.base_url or settings.download.base_url,
        out_dir=outputs.folder(args.out or settings.download.dir, "--out"),
        progress=_progress() and not args.quiet,
    )
    for item in download_files(binance_files(request), config):
        print(f"{item.path}  {'already verified' if item.skipped else 'verified'}"
              + (f" (resumed at byte {item.resumed_from:,})" if item.resumed_from else ""))
    return 0


def _cmd_train(args, settings) -> int:
    from lbml.models.summary import training_rows
    from lbml.workflows.prepare import prepare, train_model, trial_registry

    out = outputs.new_folder(args.out, "--out") if args.out else None
    scenario = _scenario(args, settings)
    registry = _registry(settings)
    prepared = prepare(scenario, registry, progress=_progress(), look_ahead=_look_ahead(args, settings))
    out = out or settings.paths.models_dir / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tracker = _tracker(settings)
    trials = trial_registry(settings.paths.runs_dir)
    try:
        with _sweep(args) as sweep:
            result = train_model(prepared, registry, out, trials=trials, progress=_progress(), sweep=sweep)
    finally:
        trials.close()
    from lbml.research.training import training_data_hash

    tracked = _track(tracker, "train", scenario, result.metrics, run_folder=result.artifact_dir,
                     data_hash=training_data_hash(scenario, prepared.market, prepared.split), echo=False)
    if args.json:  # stdout is the JSON document alone; the tracking outcome is one of its fields
        print(json.dumps({"model": str(result.artifact_dir), "n_samples": result.n_samples,
                          "n_features": result.n_features, "look_ahead_check": prepared.look_ahead,
                          "data": prepared.data, "metrics": result.metrics, "tracking": tracked},
                         indent=2, default=str))
        return 0
    _print_rows([
        ("model", str(result.artifact_dir)),
        ("training window", f"{prepared.split.train_start} .. {prepared.split.train_end}"),
        ("samples x features", f"{result.n_samples:,} x {result.n_features}"),
        ("look-ahead check", _look_ahead_line(prepared.look_ahead)),
        *(("data", line) for line in _data_lines(prepared.data)),
    ] + training_rows(result.metrics))
    print(_tracking_line(tracked))
    return 0


def _cmd_backtest(args, settings) -> int:
    from lbml.workflows.run import run_scenario

    out = outputs.new_folder(args.out, "--out") if args.out else None
    model_dir = _model_dir(args.model)
    scenario = _scenario(args, settings)
    registry = _registry(settings)
    tracker = _tracker(settings)
    with _sweep(args) as sweep:
        run_dir, metrics = run_scenario(
            scenario,
            registry,
            settings.paths.runs_dir,
            model_dir=model_dir,
            out=out,
            progress=_progress(),
            publish=_publish_settings(args, settings),
            allow_in_sample=args.allow_in_sample,
            ignore_edge_gate=args.ignore_edge_gate,
            look_ahead=_look_ahead(args, settings),
            sweep=sweep,
        )
    _print_summary(run_dir, metrics)
    _track(tracker, "backtest", scenario, metrics, run_folder=run_dir, data_hash=metrics.get("data_hash"))
    if "signals" in metrics:
        s = metrics["signals"]
        print(f"  signals: published {s['published']:,}, dropped {s['dropped']:,}, last seq {s['last_seq']} "
              f"on {s['endpoint']}")
    return 0


def _publish_settings(args, settings):
    if not getattr(args, "publish", False):
        return None
    signals = settings.signals
    if args.publish_endpoint:
        signals = signals.model_copy(update={"endpoint": args.publish_endpoint})
    from lbml.signals.config import publisher_config

    publisher_config(signals, model_id="-", feature_schema_hash="-")  # refuse bad settings before training
    return signals


def _cmd_signals_keygen(args, settings) -> int:
    from lbml.signals.security import generate_keypair

    public, secret = generate_keypair(outputs.folder(args.out, "--out"), args.name)
    print(f"public key: {public}")
    print(f"secret key: {secret}")
    return 0


def _cmd_signals_tail(args, settings) -> int:
    from lbml.signals.tail import TailConfig, tail

    config = TailConfig(
        endpoint=args.endpoint or settings.signals.endpoint,
        topics=tuple(args.topic) if args.topic else TailConfig.topics,
        stale_after_s=args.stale_after if args.stale_after is not None else 3 * settings.signals.heartbeat_interval_s,
        server_public_file=Path(args.server_key) if args.server_key else None,
        client_secret_file=Path(args.client_key) if args.client_key else None,
        count=args.count,
        duration_s=args.duration,
    )
    tail(config, emit=lambda line: print(line, flush=True))
    return 0


def _add_signals_commands(sub) -> None:
    signals = sub.add_parser("signals", help="the ZeroMQ prediction stream").add_subparsers(
        dest="signals_command", required=True
    )
    keygen = signals.add_parser("keygen", help="write a CurveZMQ key pair (NAME.key, NAME.key_secret)")
    keygen.add_argument("--out", required=True, help="folder for the key files")
    keygen.add_argument("--name", default="server", help="file name stem (default: server)")
    keygen.set_defaults(func=_cmd_signals_keygen)
    tail = signals.add_parser("tail", help="print decoded messages; flag sequence gaps and stale heartbeats")
    tail.add_argument("--endpoint", help="default: signals.endpoint from the settings")
    tail.add_argument("--topic", action="append", help="topic prefix (repeatable; default: all signals + heartbeat)")
    tail.add_argument("--stale-after", type=_positive_float, help="seconds without heartbeat before STALE (default 3 intervals)")
    tail.add_argument("--server-key", help="CURVE: the publisher's public certificate")
    tail.add_argument("--client-key", help="CURVE: this subscriber's secret certificate")
    tail.add_argument("--count", type=_positive_int, help="exit after this many signals")
    tail.add_argument("--duration", type=_positive_float, help="exit after this many seconds")
    tail.set_defaults(func=_cmd_signals_tail)


def _cmd_demo(args, settings) -> int:
    from lbml.scenario import load_scenario
    from lbml.workflows.run import run_scenario

    scenario_file = args.scenario or Path(__file__).resolve().parents[1] / "scenarios" / "default.toml"
    scenario = load_scenario(scenario_file)
    _check_model(scenario, scenario_file, settings)
    if args.days is not None:
        scenario = _with_days(scenario, args.days)
    registry = _registry(settings)
    print(f"lbml demo: {scenario.description or scenario.name}")
    if scenario.data.source == "synthetic":
        where = f"generating the embedded synthetic market ({scenario.data.days} days, seed {scenario.data.seed})"
    else:
        where = f"loading {', '.join(map(str, scenario.data.paths))}"
    print(f"{where}, training on the first part, backtesting the rest ...")
    started = time.perf_counter()
    tracker = _tracker(settings)
    run_dir, metrics = run_scenario(
        scenario, registry, settings.paths.runs_dir, progress=_progress(), ignore_edge_gate=args.ignore_edge_gate,
        look_ahead=_look_ahead(args, settings),
    )
    _print_summary(run_dir, metrics)
    _track(tracker, "backtest", scenario, metrics, run_folder=run_dir, data_hash=metrics.get("data_hash"))
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _cmd_paper(args, settings) -> int:
    from lbml.live.binance import BinanceFeedConfig
    from lbml.live.dashboard import DashboardConfig
    from lbml.live.metrics import MetricsConfig
    from lbml.live.session import PaperOptions, run_paper

    state = outputs.folder(args.state, "--state") if args.state else None
    model_dir = _model_dir(args.model)
    scenario = _scenario(args, settings)
    binance = BinanceFeedConfig(market=args.binance_market, testnet=args.binance_testnet, url=args.binance_url,
                                agg_trades=args.binance_agg_trades)
    options = PaperOptions(
        feed=args.feed, speed=args.speed, duration_s=args.duration, bars=args.bars, endpoint=args.endpoint,
        console=not args.quiet, model_budget_s=args.model_budget, stall_after_s=args.stall_after,
        binance=binance, ignore_edge_gate=args.ignore_edge_gate, plugins_dir=settings.paths.plugins_dir,
        metrics=None if args.metrics_port is None else MetricsConfig(port=args.metrics_port, host=args.metrics_host),
        dashboard=None if args.dashboard_port is None else DashboardConfig(port=args.dashboard_port,
                                                                           host=args.metrics_host),
    )
    from lbml.live.publishing import paper_publisher

    state_dir = state or outputs.folder(settings.paths.runs_dir / f"paper-{scenario.name}", "paths.runs_dir")
    signals = settings.signals
    if args.publish_endpoint:
        signals = signals.model_copy(update={"endpoint": args.publish_endpoint})
    publisher = paper_publisher(signals, state_dir, scenario)
    summary = run_paper(
        scenario, _registry(settings), state_dir, options, model_dir=model_dir,
        extra_actors=[publisher], look_ahead=_look_ahead(args, settings),
    )
    for line in _data_lines(summary["data"]):
        print(f"data: {line}")
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_report(args, settings) -> int:
    if args.target == "pbo":
        if not args.study:
            raise ConfigError("report pbo: name the study (lbml report pbo STUDY)")
        return _cmd_report_pbo(args, settings)
    if args.study:
        raise ConfigError(f"report {args.target}: unexpected argument {args.study!r}")
    from lbml.live.report import retrain_lines, write_report

    args.state_dir = args.target

    report_dir, metrics = write_report(Path(args.state_dir))
    print(f"report: {report_dir}")
    print(f"  final equity {metrics['final_equity']:,.2f} {metrics['currency']} ({_pct(metrics['total_return'])}), "
          f"{metrics['n_trades']} trades, reconciliation error {metrics['reconciliation_error']:.2e}")
    tearsheet = metrics.get("tearsheet")
    print(f"  tearsheet: {report_dir / tearsheet if tearsheet else 'none: ' + str(metrics.get('tearsheet_skipped'))}")
    if "look_ahead_check" in metrics:
        print(f"  look-ahead check: {_look_ahead_line(metrics['look_ahead_check'])}")
    for line in retrain_lines(metrics.get("retrains", [])):
        print(f"  {line}")
    quarantine = metrics["feed_quarantine"]
    if quarantine["total"]:
        reasons = ", ".join(f"{r} {n}" for r, n in quarantine["by_reason"].items())
        print(f"  feed guard: {quarantine['total']} messages quarantined ({reasons}), see {quarantine['journal']}")
    return 0


def _cmd_dashboard(args, settings) -> int:
    from lbml.live.dashboard import DashboardConfig, DashboardServer

    server = DashboardServer(Path(args.state_dir), DashboardConfig(port=args.port, host=args.host,
                                                                   interval_s=args.interval))
    print(f"dashboard of {args.state_dir}: {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
    return 0


def _cmd_feed_serve(args, settings) -> int:
    from lbml.live.serve import serve_feed

    scenario = _scenario(args, settings)
    sent = serve_feed(scenario, _registry(settings), args.endpoint, speed=args.speed, bars=args.bars,
                      wait_s=args.wait)
    print(f"sent {sent} events to {args.endpoint}")
    return 0


def _cmd_search(args, settings) -> int:
    from lbml.workflows.search import run_search, run_search_workers, trial_shares

    trial_shares(args.trials, args.workers)  # refuse a bad split before any work
    scenario = _scenario(args, settings)
    storage = args.storage or settings.paths.runs_dir / "trials.sqlite"
    options = {"n_trials": args.trials, "storage": storage, "study": args.study, "seed": args.seed,
               "look_ahead": _look_ahead(args, settings)}
    tracker = _tracker(settings)
    if args.workers == 1:
        result = run_search(scenario, _registry(settings), **options)
    else:
        result = run_search_workers(scenario, settings.paths.plugins_dir, workers=args.workers, **options)
    print(f"study {result.study} on dataset {result.dataset_hash} in {_safe_url(result.storage)}")
    print(f"ran {result.n_trials_run} trials in {result.n_workers} worker(s) ({result.n_pruned} pruned); "
          f"the study now holds {result.n_trials_study} distinct configurations")
    if result.best_value is not None:
        print(f"best out-of-fold log loss {result.best_value:.5f} with {json.dumps(result.best_params, sort_keys=True)}")
    summary = {"best_oos_logloss": result.best_value, "n_trials_run": result.n_trials_run, "n_pruned": result.n_pruned,
               "n_trials_study": result.n_trials_study, "workers": result.n_workers} | {
        f"best_{k}": v for k, v in result.best_attrs.items()}
    extra = {"search.study": result.study, "search.storage": _safe_url(result.storage), "search.seed": str(args.seed),
             "search.trials": str(args.trials), "search.workers": str(result.n_workers)} | {
        f"search.best.{k}": str(v) for k, v in result.best_params.items()}
    _track(tracker, "search", scenario, summary, data_hash=result.dataset_hash, extra_params=extra)
    return 0


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def _cmd_report_pbo(args, settings) -> int:
    from lbml.research.trials import TrialRegistry
    from lbml.research.stats import probability_of_backtest_overfitting

    storage = args.storage or settings.paths.runs_dir / "trials.sqlite"
    if "://" not in str(storage) and not Path(storage).is_file():  # reading must not create an empty registry
        raise ConfigError(f"{storage}: no trial registry (run `lbml search` or `lbml train` first)")
    registry = TrialRegistry(storage)
    try:
        key = registry.study_key(args.study, args.dataset)
        matrix = registry.return_matrix(key)
        n_all = registry.count(key)
    finally:
        registry.close()
    try:
        result = probability_of_backtest_overfitting(matrix, n_blocks=args.blocks)
    except ValueError as exc:
        raise ConfigError(f"study {args.study}: {exc}") from None
    print(f"study {args.study} on dataset {key.dataset_hash}: {result['n_trials']} completed configurations of {n_all}, "
          f"{matrix.shape[0]} samples, {result['n_splits']} CSCV splits")
    print(f"PBO = {result['pbo']:.3f}  (>= 0.5: choosing the in-sample best is no better than chance)")
    print(f"performance degradation slope (OOS on IS Sharpe) = {result['performance_degradation']:.3f}")
    return 0


def _cmd_walkforward(args, settings) -> int:
    from lbml.workflows.walkforward import run_walkforward

    out = outputs.new_folder(args.out, "--out") if args.out else None
    scenario = _scenario(args, settings)
    updates = {k: v for k, v in (("retrain_every_days", args.every_days), ("window", args.window),
                                 ("train_days", args.train_days)) if v is not None}
    if updates:
        from lbml.scenario import parse_scenario

        raw = scenario.to_dict()
        raw["walkforward"] = raw.get("walkforward", {}) | updates
        scenario = parse_scenario(raw, source="--every-days/--window/--train-days")
    tracker = _tracker(settings)
    with _sweep(args) as sweep:
        run_dir, metrics = run_walkforward(
            scenario, _registry(settings), settings.paths.runs_dir, out=out,
            progress=_progress(), look_ahead=_look_ahead(args, settings), sweep=sweep,
        )
    _track(tracker, "walkforward", scenario, metrics, run_folder=run_dir, data_hash=metrics.get("data_hash"))
    print(f"run folder: {run_dir}")
    print(f"look-ahead check: {_look_ahead_line(metrics.get('look_ahead_check'))}")
    print(f"{metrics['n_periods']} out-of-sample periods ({metrics['window']} window, retrained every "
          f"{metrics['retrain_every_days']:g} days), {metrics['n_trades']} trades")
    print(f"stitched return {_pct(metrics['total_return'])} vs buy & hold {_pct(metrics['buy_and_hold_return'])}, "
          f"max drawdown {_pct(metrics['max_drawdown'])}, sharpe {_num(metrics.get('sharpe'))}")
    return 0


def _cmd_runs_compare(args, settings) -> int:
    from lbml.workflows.compare import comparison_table, load_run
    from lbml.workflows.tracking import Tracker

    tracker = Tracker(settings.tracking, settings.paths.runs_dir)
    print(comparison_table(load_run(args.a, tracker), load_run(args.b, tracker)))
    return 0


def _cmd_bench(args, settings) -> int:
    from benchmarks.run import main as bench_main

    argv = ["--size", args.size]
    for name in args.only or []:
        argv += ["--only", name]
    if args.out:
        argv += ["--out", str(outputs.folder(args.out, "--out"))]
    return bench_main(argv)
def _cmd_features_check(args, settings) -> int:
    from lbml.features.commands import run_check

    scenario = _features_scenario(args, settings)
    report = run_check(scenario, _registry(settings), n_cuts=args.cuts, seed=args.seed, progress=_progress())
    print(f"features check: {scenario.name}, {report.n_bars:,} bars, {len(report.cuts)} cut points")
    print(report.to_table())
    if not report.ok:
        names = ", ".join(r.name for r in report.failures())
        print(f"lbml: features check FAILED for: {names}", file=sys.stderr)
        return 1
    print(f"all {len(report.results)} features passed")
    return 0


def _cmd_features_compute(args, settings) -> int:
    from lbml.features.commands import run_compute

    out = outputs.file(args.out, "--out")
    scenario = _features_scenario(args, settings)
    meta = run_compute(scenario, _registry(settings), out, progress=_progress())
    schema = meta["schema"]
    print(f"{args.out}: {len(schema['names'])} features, schema hash {schema['hash']}")
    for item in meta["unavailable"]:
        print(f"declared unavailable: {item['plugin']} ({item['reason']})")
    return 0


def _cmd_features_docs(args, settings) -> int:
    from lbml.features.reference import render_reference
    from lbml.plugins import load_registry

    out = outputs.file(args.out, "--out") if args.out else None
    text = render_reference(load_registry())
    if out is not None:
        out.write_text(text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def _features_scenario(args, settings):
    scenario = _scenario(args, settings)
    return scenario if args.days is None else _with_days(scenario, args.days)


def _with_days(scenario, days: int):
    if scenario.data.source != "synthetic":
        raise ConfigError("--days: only applies to the synthetic market (data.source = 'synthetic')")
    from pydantic import ValidationError

    from lbml.settings import format_validation_error

    try:
        return scenario.with_data(days=days)
    except ValidationError as exc:
        raise ConfigError(f"--days: {format_validation_error(exc)}") from None


# -- helpers --------------------------------------------------------------------------------------
def _model_dir(model: str | None) -> Path | None:
    """``--model``: an existing model folder, checked before any data loads."""
    if model is None:
        return None
    if not Path(model).is_dir():
        raise ConfigError(f"--model {model}: no such model folder")
    return Path(model)


def _scenario(args, settings):
    """Load ``args.scenario`` and check its model parameters against the plugin (before any data)."""
    from lbml.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    _check_model(scenario, args.scenario, settings)
    data_paths = tuple(Path(p) for p in getattr(args, "data", None) or ())
    if data_paths:
        from lbml.data.importers import infer_symbol

        symbol = infer_symbol(data_paths[0].name) or scenario.data.symbol
        ref_paths = tuple(Path(p) for p in args.reference_data or ())
        ref_symbol = (infer_symbol(ref_paths[0].name) or scenario.data.reference_symbol) if ref_paths else None
        try:
            scenario = scenario.with_data(
                source="files", paths=data_paths, symbol=symbol,
                reference_symbol=ref_symbol, reference_paths=ref_paths,
            )
        except ValueError as exc:
            raise ConfigError(f"--data: {exc}") from None
    return scenario


def _check_model(scenario, source, settings) -> None:
    from lbml.models.params import check_model_config

    check_model_config(scenario.model.plugin, scenario.model.params, _registry(settings), str(source))
    if scenario.strategy.params:
        from lbml.engine.backtest import check_strategy_params

        check_strategy_params(scenario, str(source))


def _sweep(args):
    from lbml.sweeps import open_sweep

    return open_sweep(getattr(args, "scheduler", None), getattr(args, "sweep_workers", None))


def _scheduler(text: str) -> str:
    if text == "local" or text.startswith(("tcp://", "tls://")):
        return text
    raise argparse.ArgumentTypeError(f"expected 'local' or a Dask scheduler address such as tcp://host:8786, got {text!r}")


def _add_scheduler_flags(cmd, what: str) -> None:
    cmd.add_argument("--scheduler", type=_scheduler, metavar="local|tcp://HOST:8786",
                     help=f"run {what} as Dask tasks: 'local' starts a cluster on this machine, an address joins one")
    cmd.add_argument("--sweep-workers", type=_positive_int, metavar="N",
                     help="with --scheduler local: worker processes (default: one per core)")


def _tracker(settings):
    from lbml.workflows.tracking import Tracker

    return Tracker(settings.tracking, settings.paths.runs_dir).start()


def _tracking_line(outcome) -> str:
    from lbml.workflows.tracking import tracking_line

    return tracking_line(outcome)


def _track(tracker, kind, scenario, metrics, *, run_folder=None, data_hash=None, extra_params=None,
           echo: bool = True) -> dict:
    """Log a finished run to MLflow; print one line saying where (or why not) unless ``echo`` is off."""
    from lbml.workflows.tracking import TrackedRun, numeric_metrics, scenario_params

    run = TrackedRun(
        kind=kind, name=f"{scenario.name}-{kind}", params=scenario_params(scenario) | (extra_params or {}),
        metrics=numeric_metrics(metrics), tags={"lbml.scenario": scenario.name,
                                                "lbml.scenario_hash": scenario.content_hash()},
        run_folder=run_folder, data_hash=data_hash,
    )
    outcome = tracker.finish(run)
    if echo:
        print(_tracking_line(outcome))
    return outcome


def _registry(settings):
    from lbml.plugins import load_registry

    return load_registry(settings.paths.plugins_dir)


def _progress() -> bool:
    return sys.stderr.isatty()


def _look_ahead(args, settings):
    from lbml.features.guard import LookAheadPolicy

    paths = settings.paths
    return LookAheadPolicy(paths.cache_dir or paths.runs_dir / ".cache", allow=args.allow_look_ahead)


def _look_ahead_line(check: dict | None) -> str:
    from lbml.features.guard import summary_line

    return "not run" if check is None else summary_line(check)


def _add_look_ahead_flag(cmd) -> None:
    cmd.add_argument(
        "--allow-look-ahead", action="store_true",
        help="run even if a feature fails the look-ahead check; every report is stamped LOOK-AHEAD-OVERRIDDEN",
    )


def _print_summary(run_dir: Path, metrics: dict) -> None:
    costs = metrics.get("costs", {})
    trained = metrics.get("training_metrics", {})
    gate = metrics.get("edge_gate") or {}
    rows = [
        ("run folder", str(run_dir)),
        ("backtest window", f"{metrics['backtest_window']['start']} .. {metrics['backtest_window']['end']}"),
        *(("data", line) for line in _data_lines(metrics["data"])),
        ("mode / events", f"{metrics['mode']} / {metrics['n_events']:,}"),
        ("bars / predictions", f"{metrics['n_bars']:,} / {metrics['n_predictions']:,}"),
        ("edge gate", f"{gate.get('status', 'n/a')}: {gate.get('reason', '')}"),
        ("trades / win rate (net)", f"{metrics['n_trades']} / {_pct(metrics.get('win_rate_net'))} "
                                    f"(break-even {_pct(metrics.get('break_even_win_rate'))})"),
        ("final equity", f"{metrics['final_equity']:,.2f} {metrics['currency']} ({_pct(metrics['total_return'])})"),
        ("gross PnL / costs", f"{metrics.get('gross_pnl', 0):,.2f} / {costs.get('total', 0):,.2f}"
                              + (f" ({metrics['costs_over_gross_pnl']:.0%} of gross)"
                                 if metrics.get("costs_over_gross_pnl") is not None else "")),
        ("fees / slippage / financing", " / ".join(
            f"{v:,.2f}" for v in (costs.get("fees", 0), costs.get("slippage", 0),
                                  costs.get("borrow", 0) + costs.get("funding", 0)))),
        ("cost per round trip", f"{_money(metrics.get('cost_per_round_trip'))} "
                                f"({_pct(metrics.get('cost_per_round_trip_pct'))} of notional), "
                                f"turnover {_num(metrics.get('turnover'))}x equity"),
        ("exit reasons", ", ".join(f"{k} {v}" for k, v in (metrics.get("exit_reasons") or {}).items() if v) or "none"),
        ("max exposure / cap", f"{_num(metrics.get('max_exposure'))}x / {_num(metrics.get('exposure_cap'))}x "
                               f"(short {_num(metrics.get('exposure_cap_short'))}x), at entry prices"),
        ("buy & hold", _pct(metrics.get("buy_and_hold_return"))),
        ("max drawdown", _pct(metrics.get("max_drawdown"))),
        ("sharpe (daily, ann.)", _num(metrics.get("sharpe"))),
        ("reconciliation error", f"{metrics['reconciliation_error']:.2e}"),
        ("OOS AUC / ECE (purged CV)", f"{_num(metrics.get('oos_auc'))} / {_num(metrics.get('ece'))}"),
        ("OOS trades / mean net", f"{trained.get('n_oos_trades', 'n/a')} / {_pct(trained.get('oos_mean_trade_return'))} "
                                  "per trade (every bar, net of costs)"),
        ("PSR / DSR (N trials)", f"{_num(metrics.get('psr'))} / {_num(metrics.get('dsr'))} ({metrics.get('n_trials')})"
                                 + ("  significant" if (metrics.get("dsr") or 0) >= 0.95 else "  not significant")),
        ("early-stopping AUC", f"{_num(trained.get('early_stopping_auc'))} (in-sample: the block the trees were tuned on)"),
        ("tearsheet", str(run_dir / metrics["tearsheet"]) if metrics.get("tearsheet") else f"none: {metrics.get('tearsheet_skipped')}"),
        ("look-ahead check", _look_ahead_line(metrics.get("look_ahead_check"))),
    ]
    if trained.get("resampling"):
        rows.insert(rows.index(next(r for r in rows if r[0] == "early-stopping AUC")),
                    ("resampling (training rows)", _resampling_line(trained["resampling"])))
    if metrics.get("in_sample"):
        rows.insert(0, ("*** IN-SAMPLE ***", "model trained inside the backtest window: not evidence of anything"))
    if gate.get("status") == "overridden":
        rows.insert(0, ("*** EDGE GATE OVERRIDDEN ***", "traded with --ignore-edge-gate: " + gate.get("reason", "")))
    if metrics.get("negative_equity"):
        rows.insert(0, ("*** NEGATIVE EQUITY ***", metrics["negative_equity"]))
    if metrics.get("look_ahead_check", {}).get("status") == "overridden":
        rows.insert(0, ("*** LOOK-AHEAD CHECK OVERRIDDEN ***", "a feature leaks (--allow-look-ahead): not evidence of anything"))
    _print_rows(rows)


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def _resampling_line(r: dict) -> str:
    folds = r.get("folds") or {}
    before, after = folds.get("up_share_before") or [], folds.get("up_share_after") or []
    share = (f"class-1 share {sum(before) / len(before):.1%} -> {sum(after) / len(after):.1%} (mean of {len(before)} fits), "
             if before else "")
    rows = f"{folds.get('n_synthetic', 0)} synthetic / {folds.get('n_dropped', 0)} dropped rows"
    if "oos_logloss_change" not in r:
        return f"{r['method']}: {share}{rows}; {r.get('oos_effect', '')}"
    return (f"{r['method']}: {share}{rows}; OOS log loss {_num(r['oos_logloss_with_resampling'])} vs "
            f"{_num(r['oos_logloss_without_resampling'])} without ({r['oos_logloss_change']:+.4f}; "
            f"raw {r['oos_logloss_raw_change']:+.4f})")


def _data_lines(description: dict) -> list[str]:
    from lbml.data.provenance import summary_lines

    return summary_lines(description)


def _money(value) -> str:
    return "n/a" if value is None or value != value else f"{value:,.2f}"


def _pct(value) -> str:
    return "n/a" if value is None or value != value else f"{value * 100:+.2f}%"


def _num(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


IGNORE_GATE_HELP = "trade the model even when its out-of-fold evidence shows no edge after costs; every report is stamped"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2, no usage block); subcommand parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lbml", description="ML-driven leveraged crypto trading on nautilus_trader")
    parser.add_argument("--version", action="version", version=f"lbml {__version__}")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="inspect scenarios").add_subparsers(dest="config_command", required=True)
    show = config.add_parser("show", help="print the fully resolved scenario")
    show.add_argument("scenario")
    show.set_defaults(func=_cmd_config_show)

    plugins = sub.add_parser("plugins", help="list registered plugins and where they came from")
    plugins.set_defaults(func=_cmd_plugins)

    data = sub.add_parser("data", help="generate or validate market data").add_subparsers(dest="data_command", required=True)
    gen = data.add_parser("generate", help="write the embedded synthetic market to a folder")
    gen.add_argument("--out", required=True)
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument("--seed", type=int, default=7)
    gen.set_defaults(func=_cmd_data_generate)
    dl = data.add_parser("download", help="download Binance public data (data.binance.vision layout), verified")
    dl.add_argument("kind", choices=["klines", "trades", "funding"])
    dl.add_argument("symbol", help="exchange symbol, e.g. BTCUSDT")
    dl.add_argument("--start", required=True, metavar="DATE", help="first day YYYY-MM-DD or month YYYY-MM")
    dl.add_argument("--end", metavar="DATE", help="last day or month, inclusive (default: --start)")
    dl.add_argument("--period", choices=["monthly", "daily"], default="monthly", help="monthly or daily files")
    dl.add_argument("--interval", default="1m", help="klines: bar interval (default 1m)")
    dl.add_argument("--market", choices=["spot", "usdt_futures"], default=None,
                    help="spot (default) or USD-M futures (funding: always usdt_futures)")
    dl.add_argument("--out", help="folder (default: download.dir from the settings); the site's layout below it")
    dl.add_argument("--base-url", help="server with the data.binance.vision layout (default: download.base_url)")
    dl.add_argument("--quiet", action="store_true", help="no progress bars")
    dl.set_defaults(func=_cmd_data_download)
    val = data.add_parser("validate", help="check data files and print a report")
    val.add_argument("paths", nargs="+")
    val.set_defaults(func=_cmd_data_validate)

    for name, func, helptext in (
        ("train", _cmd_train, "train the scenario's model on its training window"),
        ("backtest", _cmd_backtest, "backtest a scenario (training first unless --model is given)"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("scenario")
        cmd.add_argument("--data", action="append", metavar="PATH", help="real data file(s) for the traded symbol")
        cmd.add_argument("--reference-data", action="append", metavar="PATH", help="data file(s) for the reference symbol")
        cmd.add_argument("--out", help="output folder")
        if name == "train":
            cmd.add_argument("--json", action="store_true", help="print the training metrics as JSON instead of a table")
        if name == "backtest":
            cmd.add_argument("--model", help="a model artifact folder from `lbml train`")
            cmd.add_argument("--publish", action="store_true", help="publish predictions over ZeroMQ while backtesting")
            cmd.add_argument("--publish-endpoint", help="with --publish: endpoint (default: signals.endpoint)")
            cmd.add_argument(
                "--allow-in-sample", action="store_true",
                help="run a model whose training window overlaps the backtest; every report is stamped IN-SAMPLE",
            )
            cmd.add_argument("--ignore-edge-gate", action="store_true", help=IGNORE_GATE_HELP)
        _add_look_ahead_flag(cmd)
        _add_scheduler_flags(cmd, "the CV folds" + (" and the robustness grid" if name == "backtest" else ""))
        cmd.set_defaults(func=func)

    paper = sub.add_parser("paper", help="paper-trade a scenario on a TradingNode (crash-safe; resumes from --state)")
    paper.add_argument("scenario")
    paper.add_argument("--model", help="a model artifact folder (default: train on the training window)")
    paper.add_argument("--feed", choices=["replay", "zmq", "binance"], default="replay")
    paper.add_argument("--speed", type=_positive_float, default=1.0, help="replay speed, multiple of real time")
    paper.add_argument("--duration", type=_positive_float, default=None, metavar="S", help="stop after S wall-clock seconds")
    paper.add_argument("--bars", type=_positive_int, default=None,
                       help="replay: only the first N bars after the training window; zmq/binance: stop after N bar periods")
    paper.add_argument("--state", help="state folder (default: <runs_dir>/paper-<scenario>)")
    paper.add_argument("--endpoint", default="tcp://127.0.0.1:5560", help="ZeroMQ endpoint for --feed zmq")
    paper.add_argument("--binance-market", default="spot", metavar="spot|usdt_futures",
                       help="--feed binance: spot or USD-M perpetual futures (funding rates need usdt_futures)")
    paper.add_argument("--binance-testnet", action="store_true", help="--feed binance: Binance's testnet streams")
    paper.add_argument("--binance-url", default=None, metavar="WS_URL",
                       help="--feed binance: websocket base URL replacing Binance's (a proxy or a local server)")
    paper.add_argument("--binance-agg-trades", action="store_true",
                       help="--feed binance: aggregated trades (one per taker order) instead of raw trades")
    paper.add_argument("--data", action="append", metavar="PATH", help="real data file(s) for the traded symbol")
    paper.add_argument("--reference-data", action="append", metavar="PATH", help="data file(s) for the reference symbol")
    paper.add_argument("--quiet", action="store_true", help="no console status line")
    paper.add_argument("--publish-endpoint", help="ZeroMQ endpoint for the published signals (default: signals.endpoint)")
    paper.add_argument("--model-budget", type=_positive_float, default=1.0, metavar="S",
                       help="a prediction slower than S seconds is withheld and degrades the session")
    paper.add_argument("--stall-after", type=_positive_float, default=30.0, metavar="S",
                       help="report the feed as stalled after S seconds without a market event")
    paper.add_argument("--ignore-edge-gate", action="store_true", help=IGNORE_GATE_HELP)
    paper.add_argument("--metrics-port", type=int, default=None, metavar="P",
                       help="serve Prometheus metrics on http://HOST:P/metrics while the session runs (0: any free port)")
    paper.add_argument("--dashboard-port", type=int, default=None, metavar="P",
                       help="serve the dashboard (as `lbml dashboard STATE_DIR`) on http://HOST:P/ while the session runs")
    paper.add_argument("--metrics-host", default="127.0.0.1", metavar="IP",
                       help="address the metrics endpoint and the dashboard bind (default loopback)")
    _add_look_ahead_flag(paper)
    paper.set_defaults(func=_cmd_paper)

    dashboard = sub.add_parser("dashboard", help="watch a paper session in a browser (reads its state folder only)")
    dashboard.add_argument("state_dir", help="a paper state folder (running, finished or crashed)")
    dashboard.add_argument("--port", type=int, default=8050, help="HTTP port (0: any free port)")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    dashboard.add_argument("--interval", type=float, default=1.0, metavar="S", help="the page polls every S seconds")
    dashboard.set_defaults(func=_cmd_dashboard)

    report = sub.add_parser(
        "report", help="`report STATE_DIR`: a paper session's report; `report pbo STUDY`: PBO of a study"
    )
    report.add_argument("target", help="a paper state folder, or `pbo`")
    report.add_argument("study", nargs="?", help="with `pbo`: the study name")
    report.add_argument("--storage", help="with pbo: database URL or SQLite file (default: trials.sqlite in the runs folder)")
    report.add_argument("--blocks", type=int, default=16, help="with pbo: even number of CSCV blocks S")
    report.add_argument("--dataset", help="with pbo: dataset hash (or a unique prefix) when the study has several")
    report.set_defaults(func=_cmd_report)

    feed = sub.add_parser("feed", help="market-data feeds").add_subparsers(dest="feed_command", required=True)
    serve = feed.add_parser("serve", help="replay a scenario's data (after its training window) on a ZeroMQ PUB socket")
    serve.add_argument("scenario")
    serve.add_argument("--endpoint", default="tcp://127.0.0.1:5560")
    serve.add_argument("--speed", type=_positive_float, default=1.0)
    serve.add_argument("--bars", type=_positive_int, default=None)
    serve.add_argument("--wait", type=_positive_float, default=30.0, help="longest wait for a first subscriber (seconds)")
    serve.add_argument("--data", action="append", metavar="PATH")
    serve.add_argument("--reference-data", action="append", metavar="PATH")
    serve.set_defaults(func=_cmd_feed_serve)

    search = sub.add_parser("search", help="Optuna search over purged out-of-fold log loss; every trial is registered")
    search.add_argument("scenario")
    search.add_argument("--trials", type=_positive_int, required=True)
    search.add_argument("--storage", help="database URL (postgresql://user@host/db, sqlite:///file) or SQLite file "
                        "(default: trials.sqlite in the runs folder)")
    search.add_argument("--study", help="study name (default: the scenario name)")
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--workers", type=_positive_int, default=1,
                        help="worker processes on this machine sharing the study (other machines join with --storage)")
    search.add_argument("--data", action="append", metavar="PATH", help="real data file(s) for the traded symbol")
    search.add_argument("--reference-data", action="append", metavar="PATH")
    _add_look_ahead_flag(search)
    search.set_defaults(func=_cmd_search)


    wf = sub.add_parser("walkforward", help="retrain every K days, trade the next period, stitch one OOS curve")
    wf.add_argument("scenario")
    wf.add_argument("--every-days", type=_positive_float, help="retraining interval K (default: scenario walkforward.retrain_every_days)")
    wf.add_argument("--window", choices=["expanding", "sliding"])
    wf.add_argument("--train-days", type=_positive_float, help="first training span / sliding window length")
    wf.add_argument("--data", action="append", metavar="PATH", help="real data file(s) for the traded symbol")
    wf.add_argument("--reference-data", action="append", metavar="PATH")
    wf.add_argument("--out", help="output folder")
    _add_look_ahead_flag(wf)
    _add_scheduler_flags(wf, "the periods")
    wf.set_defaults(func=_cmd_walkforward)
    _add_features_parser(sub)

    demo = sub.add_parser("demo", help="generate the embedded market, train, backtest, report")
    demo.add_argument("--scenario", help="default: the shipped scenarios/default.toml (the embedded synthetic market)")
    demo.add_argument("--days", type=int, default=None)
    demo.add_argument("--ignore-edge-gate", action="store_true", help=IGNORE_GATE_HELP)
    _add_look_ahead_flag(demo)
    demo.set_defaults(func=_cmd_demo)
    _add_signals_commands(sub)

    runs = sub.add_parser("runs", help="tracked runs").add_subparsers(dest="runs_command", required=True)
    compare = runs.add_parser("compare", help="two runs' key metrics side by side (run folders or MLflow run ids)")
    compare.add_argument("a", help="run folder or MLflow run id")
    compare.add_argument("b", help="run folder or MLflow run id")
    compare.set_defaults(func=_cmd_runs_compare)

    bench = sub.add_parser("bench", help="run the benchmark suite (every figure with a same-run baseline)")
    bench.add_argument("--size", choices=["smoke", "full"], default="full")
    bench.add_argument("--only", action="append", metavar="NAME", help="run only bench_NAME (repeatable)")
    bench.add_argument("--out", help="folder for latest.json and latest.md (default runs/bench, git-ignored)")
    bench.set_defaults(func=_cmd_bench)
    return parser


def _add_features_parser(sub) -> None:
    features = sub.add_parser("features", help="check, compute and document feature plugins")
    fsub = features.add_subparsers(dest="features_command", required=True)
    for name, func, helptext in (
        ("check", _cmd_features_check, "look-ahead, batch/stream parity and warm-up checks per feature"),
        ("compute", _cmd_features_compute, "write the feature matrix and its schema to parquet"),
    ):
        cmd = fsub.add_parser(name, help=helptext)
        cmd.add_argument("scenario")
        cmd.add_argument("--data", action="append", metavar="PATH", help="real data file(s) for the traded symbol")
        cmd.add_argument("--reference-data", action="append", metavar="PATH", help="data file(s) for the reference symbol")
        cmd.add_argument("--days", type=int, default=None, help="synthetic market length (overrides the scenario)")
        if name == "check":
            cmd.add_argument("--cuts", type=_positive_int, default=8, help="random cut points (default 8)")
            cmd.add_argument("--seed", type=int, default=0)
        else:
            cmd.add_argument("--out", required=True, metavar="FILE.parquet")
        cmd.set_defaults(func=func)
    docs = fsub.add_parser("docs", help="print (or write) the feature reference generated from the plugins")
    docs.add_argument("--out", help="file to write, e.g. docs/FEATURES.md")
    docs.set_defaults(func=_cmd_features_docs)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
