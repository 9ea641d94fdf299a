"""``interpbench run | list | leaderboard | report | publish | validate | compare | cache``.

User errors exit with status 2 and one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from benchmark import __version__
from benchmark.config import EXECUTORS
from benchmark.errors import UserError


def _cache(args):
    from benchmark.cache import Cache, default_root

    return Cache(Path(args.cache_dir) if args.cache_dir else default_root())


def cmd_run(args) -> int:
    from benchmark.config import load_config
    from benchmark.executors import make_executor
    from benchmark.leaderboard import build_leaderboards
    from benchmark.runner import Runner

    config = load_config(args.config)
    executor = args.executor or ("ray" if args.ray_address else config.executor)
    runner = Runner(
        config,
        _cache(args),
        executor=make_executor(executor, args.ray_address),
        results_dir=Path(args.results_dir),
        only_methods=tuple(args.only_method or ()),
        only_metrics=tuple(args.only_metric or ()),
        run_id=args.run_id,
        progress=not args.quiet,
    )
    result = runner.run()
    from benchmark.results import run_digest

    digest = run_digest(result.run_dir)
    text = build_leaderboards(result.scores, result.fits, result.run_dir / "leaderboards", digest=digest)
    from benchmark.plots import build_plots

    build_plots(result.scores, result.fits, result.run_dir / "plots")
    print(text)
    print(
        "stage times:\n" + result.stage_times.to_string(index=False, float_format=lambda x: f"{x:.2f}"), file=sys.stderr
    )
    print(f"results: {result.run_dir}", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    from benchmark.registry import REGISTRIES

    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        reg = REGISTRIES[kind]
        print(f"{kind}:")
        for name in reg.names():
            src = reg.source(name)
            extra = "" if src == "builtin" else f"  [{src}]"
            print(f"  {name:<24} {reg.describe(name)}{extra}")
    if args.layers:
        from benchmark.config import TaskSpec
        from benchmark.runner import build_model

        model = build_model(TaskSpec(model=args.layers, layers=("?",), dataset="?"))
        print(f"layers of {args.layers}:")
        for layer in model.layers():
            print(f"  {layer}")
    return 0


def cmd_leaderboard(args) -> int:
    from benchmark.leaderboard import build_leaderboards
    from benchmark.results import read_tables

    run_dir = Path(args.run)
    scores, fits = read_tables(run_dir)
    out = Path(args.out) if args.out else run_dir / "leaderboards"
    text = build_leaderboards(scores, fits, out)
    if args.format == "md":
        print(text)
    else:
        from benchmark.leaderboard import compute_leaderboards

        print(compute_leaderboards(scores, fits).render(args.format))
    print(f"leaderboards (md, csv, tex): {out}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    import time

    from benchmark.report.build import build_report, report_size

    start = time.perf_counter()
    index = build_report(Path(args.run), Path(args.out) if args.out else None)
    files, size = report_size(index.parent)
    print(
        f"report: {index} ({files} files, {size / 2**20:.1f} MB, {time.perf_counter() - start:.1f} s); "
        f"open it in a browser, or serve it: python -m http.server -d {index.parent}",
        file=sys.stderr,
    )
    print(index)
    return 0


def cmd_validate(args) -> int:
    import time

    from benchmark.validity import check_quick, run_study, write_page

    start = time.perf_counter()
    study = run_study(quick=args.quick, results_run=args.results, log=lambda m: print(m, file=sys.stderr))
    command = (
        "interpbench validate"
        + (" --quick" if args.quick else "")
        + (f" --results {args.results}" if args.results else "")
    )
    page = write_page(study, Path(args.out), command=command, seconds=time.perf_counter() - start)
    print(f"validity study: {page}")
    failures = check_quick(study)
    for f in failures:
        print(f"validity check failed: {f}", file=sys.stderr)
    return 1 if failures else 0


def cmd_publish(args) -> int:
    from benchmark.leaderboard import write_results_readme

    page = write_results_readme(Path(args.run), Path(args.out))
    print(f"published {Path(args.run).resolve().name} to {page}")
    return 0


def cmd_compare(args) -> int:
    from benchmark.compare import compare, load_cells, render

    run = load_cells(args.run)
    reference = load_cells(args.reference, interval=args.interval)
    result = compare(run.summary, reference.summary)
    print(render(result, run, reference))
    if not result.coverage >= args.min_coverage:
        print(
            f"interpbench: coverage {result.coverage:.3f} is below --min-coverage {args.min_coverage:g} "
            f"({result.inside} of {result.cells} medians of {args.run} inside {args.reference}'s intervals)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_cache(args) -> int:
    cache = _cache(args)
    if args.action == "info":
        info = cache.info()
        print(f"cache: {cache.root}")
        for stage, v in info.items():
            print(f"  {stage:<12} {int(v['entries']):>6} entries {v['mb']:>10.1f} MB")
        if not info:
            print("  (empty)")
    elif args.action == "clear":
        cache.clear(args.stage)
        print(f"cleared {cache.root / args.stage if args.stage else cache.root}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interpbench", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"interpbench {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--cache-dir", help="stage cache (default $INTERPBENCH_CACHE or ~/.cache/interpbench)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a benchmark grid")
    r.add_argument("--config", default="quick", help="a TOML file, or a shipped config: quick, default")
    r.add_argument("--results-dir", default="results", help="where runs/<run_id>/ is written")
    r.add_argument("--only-method", action="append", help="run only this method (repeatable)")
    r.add_argument("--only-metric", action="append", help="score only this metric (repeatable)")
    r.add_argument("--run-id", help="name of the run directory (default: config name + hash)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        help="run cells here, in worker processes here, or as Ray tasks (default: the config's executor)",
    )
    r.add_argument(
        "--ray-address", metavar="ADDR", help="a running Ray cluster (host:port); default starts a local one"
    )
    r.set_defaults(fn=cmd_run)

    ls = sub.add_parser("list", help="list registered plugins")
    ls.add_argument("kind", nargs="?", choices=["methods", "metrics", "datasets", "models", "captioners"])
    ls.add_argument("--layers", metavar="MODEL", help="list the layers of MODEL")
    ls.set_defaults(fn=cmd_list)

    lb = sub.add_parser("leaderboard", help="build leaderboards from a run directory")
    lb.add_argument("run", help="results/runs/<run_id>")
    lb.add_argument("--out", help="output folder (default RUN/leaderboards)")
    lb.add_argument(
        "--format",
        choices=["md", "csv", "latex"],
        default="md",
        help="what to print (every format is written to the output folder)",
    )
    lb.set_defaults(fn=cmd_leaderboard)

    rp = sub.add_parser("report", help="build the static HTML report of a run directory")
    rp.add_argument("run", help="results/runs/<run_id>")
    rp.add_argument("--out", help="output folder (default RUN/report)")
    rp.set_defaults(fn=cmd_report)

    pb = sub.add_parser("publish", help="write a run's leaderboards, plots and README into the results folder")
    pb.add_argument("run", help="results/runs/<run_id> (or results/runs/latest)")
    pb.add_argument("--out", default="results", help="the folder to fill (default: results)")
    pb.set_defaults(fn=cmd_publish)

    v = sub.add_parser("validate", help="the validity study: metrics and methods against planted ground truth")
    v.add_argument("--quick", action="store_true", help="a small version (shapes only, two noise levels)")
    v.add_argument("--results", help="a run directory (e.g. results/runs/latest) for parts 3-5")
    v.add_argument("--out", default="docs", help="where validity.md and validity/ are written")
    v.set_defaults(fn=cmd_validate)

    cp = sub.add_parser("compare", help="check a rerun's cell medians against a reference's intervals")
    cp.add_argument("run", help="a run directory (results/runs/<run_id>) or a folder with leaderboards/summary.csv")
    cp.add_argument(
        "reference", nargs="?", default="results", help="the published results folder (default: results) or a run"
    )
    cp.add_argument(
        "--min-coverage", type=float, default=0.9, help="exit 1 when the overall coverage is below this (default 0.9)"
    )
    cp.add_argument(
        "--interval",
        choices=["rerun", "directions"],
        default="rerun",
        help="when REFERENCE is a run: its rerun interval (default) or the direction-only bootstrap",
    )
    cp.set_defaults(fn=cmd_compare)

    c = sub.add_parser("cache", help="inspect or clear the stage cache")
    c.add_argument("action", choices=["info", "clear"])
    c.add_argument("--stage", help="with clear: only this stage")
    c.set_defaults(fn=cmd_cache)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not args.debug:
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    try:
        return args.fn(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"interpbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interpbench: interrupted; finished stages are cached, run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
