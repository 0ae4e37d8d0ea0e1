"""``python -m benchmarks``: the one entry point of the benchmarks (see benchmarks/README.md).

    python -m benchmarks --list
    python -m benchmarks NAME [--dataset D ...] [--rows R ...] [--seeds 0 1 2] [--jobs N] [--threads T]
                              [--smoke] [--out DIR] [--set KEY=VALUE ...]
    python -m benchmarks NAME --table FILE [FILE ...]      # re-print the table of saved results
    python -m benchmarks SCRIPT [--threads T] [--smoke] -- ARGS ...   # a standalone script, ARGS passed through
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from benchmarks import harness


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="the benchmark (a script stem of benchmarks/; --list names them)")
    p.add_argument("--list", action="store_true", help="list the benchmarks, one line each, and exit")
    p.add_argument("--dataset", nargs="+", dest="datasets", help="datasets (default: the benchmark's)")
    p.add_argument("--rows", nargs="+", help="rows (default: the benchmark's)")
    p.add_argument("--seeds", type=int, nargs="+", help="model seeds (default: the benchmark's; --smoke: 0)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes at a time")
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads per worker")
    p.add_argument("--smoke", action="store_true",
                   help="the tiny configuration on the bundled PBMC3k subset (seconds; not a measurement)")
    p.add_argument("--out", type=Path, help="results folder (default: benchmarks/results; --smoke: "
                                            "benchmarks/results/smoke)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="options",
                   help="override an option of the benchmark (VALUE read as JSON when it parses)")
    p.add_argument("--table", type=Path, nargs="+", help="print the table of saved result files and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # one job (JSON) in this process
    return p


def _options(items: list[str]) -> dict:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


def _list() -> str:
    lines = []
    for name, path in harness.scripts().items():
        kind = "harness" if harness.is_declared(path) else "script "
        lines.append(f"{name:<20} {kind}  {harness.summary(path)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.worker:
        harness.worker(harness.Job(**json.loads(args.worker)))
        return 0
    if args.list:
        sys.stdout.write(_list() + "\n")
        return 0
    if not args.name:
        _parser().print_usage()
        return 2
    known = harness.scripts()
    if args.name not in known:
        sys.stderr.write(harness.unknown(args.name) + "\n")
        return 2
    from exprflow.errors import ExprflowInputError

    try:
        if not harness.is_declared(known[args.name]):
            return harness.run_script(args.name, passthrough, args.threads, args.smoke)
        if passthrough:
            raise ExprflowInputError(f"{args.name} runs on the harness: it takes no '-- ARGS' (use --set KEY=VALUE).")
        if args.table:
            sys.stdout.write(harness.legacy_table(args.name, args.table) + "\n")
            return 0
        out = args.out or (harness.RESULTS / "smoke" if args.smoke else harness.RESULTS)
        failed = harness.run(args.name, args.datasets, args.rows, args.seeds, smoke=args.smoke,
                             options=_options(args.options), jobs=args.jobs, threads=args.threads, out=out)
    except ExprflowInputError as err:
        sys.stderr.write(f"Error: {err}\n")
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
