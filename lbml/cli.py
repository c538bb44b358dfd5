"""The ``lbml`` command line. Each command is a thin wrapper over ``lbml.workflows``.

User errors (``LbmlError``) print one line and exit with code 2; no traceback.
"""

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lbml import __version__
from lbml.errors import ConfigError, LbmlError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        from lbml.settings import load_settings

        settings = load_settings()
        level = args.log_level or settings.log_level
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        return int(args.func(args, settings) or 0)
    except LbmlError as exc:
        print(f"lbml: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lbml: interrupted", file=sys.stderr)
        return 130


# -- commands -------------------------------------------------------------------------------------
def _cmd_config_show(args, settings) -> int:
    scenario = _scenario(args)
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

    config = SyntheticMarketConfig(days=args.days, seed=args.seed)
    market = generate_market(config, progress=sys.stderr.isatty())
    for path in write_market(market, Path(args.out), config=config):
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
    if fatal:
        print("lbml: error: fatal data problems found (see above)", file=sys.stderr)
        return 2
    return 0


def _cmd_train(args, settings) -> int:
    from lbml.workflows import prepare, train_model

    scenario = _scenario(args)
    registry = _registry(settings)
    prepared = prepare(scenario, registry, progress=_progress())
    out = Path(args.out) if args.out else settings.paths.models_dir / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train_model(prepared, registry, out)
    print(f"model: {result.artifact_dir}")
    print(f"trained on {result.n_samples} samples x {result.n_features} features, window "
          f"{prepared.split.train_start} .. {prepared.split.train_end}")
    print(json.dumps(result.metrics, indent=2))
    return 0


def _cmd_backtest(args, settings) -> int:
    from lbml.workflows import run_scenario

    scenario = _scenario(args)
    registry = _registry(settings)
    run_dir, metrics = run_scenario(
        scenario,
        registry,
        settings.paths.runs_dir,
        model_dir=Path(args.model) if args.model else None,
        out=Path(args.out) if args.out else None,
        progress=_progress(),
    )
    _print_summary(run_dir, metrics)
    return 0


def _cmd_demo(args, settings) -> int:
    from lbml.scenario import load_scenario
    from lbml.workflows import run_scenario

    scenario = load_scenario(args.scenario)
    if args.days:
        scenario = scenario.with_data(days=args.days)
    registry = _registry(settings)
    print(f"lbml demo: {scenario.description or scenario.name}")
    print(f"generating the embedded market ({scenario.data.days} days, seed {scenario.data.seed}), "
          "training on the first part, backtesting the rest ...")
    started = time.perf_counter()
    run_dir, metrics = run_scenario(scenario, registry, settings.paths.runs_dir, progress=True)
    _print_summary(run_dir, metrics)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _cmd_features_check(args, settings) -> int:
    from lbml.features.commands import run_check

    scenario = _features_scenario(args)
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

    if not Path(args.out).parent.is_dir():
        raise ConfigError(f"--out: directory {Path(args.out).parent} does not exist")
    scenario = _features_scenario(args)
    meta = run_compute(scenario, _registry(settings), Path(args.out), progress=_progress())
    schema = meta["schema"]
    print(f"{args.out}: {len(schema['names'])} features, schema hash {schema['hash']}")
    for item in meta["unavailable"]:
        print(f"declared unavailable: {item['plugin']} ({item['reason']})")
    return 0


def _cmd_features_docs(args, settings) -> int:
    from lbml.features.reference import render_reference
    from lbml.plugins import load_registry

    text = render_reference(load_registry())
    if args.out:
        Path(args.out).write_text(text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def _features_scenario(args):
    scenario = _scenario(args)
    if args.days is not None:
        if scenario.data.source != "synthetic":
            raise ConfigError("--days: only applies to the synthetic market")
        try:
            scenario = scenario.with_data(days=args.days)
        except ValueError as exc:
            raise ConfigError(f"--days: {exc}") from None
    return scenario


# -- helpers --------------------------------------------------------------------------------------
def _scenario(args):
    from lbml.scenario import load_scenario

    scenario = load_scenario(args.scenario)
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


def _registry(settings):
    from lbml.plugins import load_registry

    return load_registry(settings.paths.plugins_dir)


def _progress() -> bool:
    return sys.stderr.isatty()


def _print_summary(run_dir: Path, metrics: dict) -> None:
    costs = metrics.get("costs", {})
    rows = [
        ("run folder", str(run_dir)),
        ("backtest window", f"{metrics['backtest_window']['start']} .. {metrics['backtest_window']['end']}"),
        ("mode / events", f"{metrics['mode']} / {metrics['n_events']:,}"),
        ("bars / predictions", f"{metrics['n_bars']:,} / {metrics['n_predictions']:,}"),
        ("trades / win rate", f"{metrics['n_trades']} / {_pct(metrics.get('win_rate'))}"),
        ("final equity", f"{metrics['final_equity']:,.2f} {metrics['currency']} ({_pct(metrics['total_return'])})"),
        ("buy & hold", _pct(metrics.get("buy_and_hold_return"))),
        ("max drawdown", _pct(metrics.get("max_drawdown"))),
        ("sharpe (daily, ann.)", _num(metrics.get("sharpe"))),
        ("fees / slippage / borrow", " / ".join(f"{costs.get(k, 0):,.2f}" for k in ("fees", "slippage", "borrow"))),
        ("reconciliation error", f"{metrics['reconciliation_error']:.2e}"),
        ("validation AUC (train)", _num(metrics.get("training_metrics", {}).get("validation_auc"))),
        ("tearsheet", str(run_dir / metrics["tearsheet"]) if metrics.get("tearsheet") else f"none: {metrics.get('tearsheet_skipped')}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def _pct(value) -> str:
    return "n/a" if value is None or value != value else f"{value * 100:+.2f}%"


def _num(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbml", description="ML-driven leveraged crypto trading on nautilus_trader")
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
        if name == "backtest":
            cmd.add_argument("--model", help="a model artifact folder from `lbml train`")
        cmd.set_defaults(func=func)

    _add_features_parser(sub)

    demo = sub.add_parser("demo", help="generate the embedded market, train, backtest, report")
    demo.add_argument("--scenario", default="scenarios/default.toml")
    demo.add_argument("--days", type=int, default=None)
    demo.set_defaults(func=_cmd_demo)
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
