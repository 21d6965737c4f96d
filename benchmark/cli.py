"""The `rubench` command line: evaluate, report, baseline, check, corrupt, list, demo.

Exit codes: 0 all done; 1 some checkpoint or task failed (the rest was still evaluated and
stored) or, for `check`, a metric regressed; 2 unusable input (bad suite, missing data, bad flags,
unreadable results or baseline).

torch and the measurement packages are imported only by the commands that run models, so
`--help`, `baseline` and `check` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark import __version__, builtin_suites
from benchmark.errors import RubenchError, SuiteError
from reports.errors import ReportError

if TYPE_CHECKING:
    from benchmark.runner import RunOptions, RunSummary


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.replace(",", " ").split()]


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer or auto") from None


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.replace(",", " ").replace("x", " ").split()]


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that override the suite; default None means 'not set', so the suite's value stays."""
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda")
    parser.add_argument("--batch-size", type=_batch_size, default=None,
                        help="images per batch, or auto: start at 1024 and halve on "
                             "out-of-memory errors (any batch size that does not fit is halved "
                             "and the unit measured again; the size used is in the provenance)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate a seeded class-stratified subset of N images (0 = all)")
    parser.add_argument("--tasks", default=None, help="comma-separated task names of the suite")
    parser.add_argument("--workers", type=int, default=None,
                        help="data loader processes for data sets read from image files "
                             "(default: min(8, CPU cores))")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: this process, one unit after another; ray: Ray tasks on "
                             "a local Ray, or on the cluster of --ray-address (workers must "
                             "see the checkpoints and --data-root at the same paths)")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="the Ray cluster to use: auto (the one this machine is part of) "
                             "or host:port (default: start a local Ray)")
    parser.add_argument("--gpus-per-unit", type=float, default=0.0, metavar="N",
                        help="GPUs Ray reserves for each job (fractions share a GPU between "
                             "small models' jobs)")
    parser.add_argument("--shard-size", type=int, default=0, metavar="N",
                        help="split clean, attack and corruption units into shards of about N "
                             "images, computed apart and merged (0: do not split); the results "
                             "are the same")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is often "
                             "fastest for small models on a busy laptop)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="forward-only passes under autocast at this dtype (attacks and "
                             "ODIN stay float32); refused per checkpoint when its top-1 "
                             "predictions on the first batch agree with float32 on less than "
                             "--min-agreement percent")
    parser.add_argument("--min-agreement", type=float, default=99.5, metavar="PERCENT",
                        help="the --precision guard's threshold (default 99.5)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_plugin_flag(parser)


def _add_plugin_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import this module (or .py file) first: it registers extra "
                             "tasks, scorers, attacks... (repeatable)")


def _load_plugins(args: argparse.Namespace) -> None:
    from benchmark.registry import load_plugin

    for spec in getattr(args, "plugin", []):
        load_plugin(spec)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="rubench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version",
                        version=f"rubench {__version__} (python -m pip show rubench)")
    sub = parser.add_subparsers(dest="command", required=True)

    evaluate = sub.add_parser("evaluate", help="evaluate a directory of checkpoints")
    evaluate.add_argument("ckpt_dir", type=Path, help="checkpoint directory (or one file)")
    evaluate.add_argument("--suite", required=True,
                          help="a built-in suite (" + ", ".join(builtin_suites())
                               + ") or the path of a suite TOML")
    evaluate.add_argument("--data-root", type=Path, default=None,
                          help="folder holding the data sets under their archive names")
    evaluate.add_argument("--arch", default=None)
    evaluate.add_argument("--num-classes", type=int, default=None)
    evaluate.add_argument("--mean", type=_floats, default=None, help="e.g. '0.485,0.456,0.406'")
    evaluate.add_argument("--std", type=_floats, default=None)
    evaluate.add_argument("--input-size", type=_ints, default=None, help="e.g. 32 or 224x224")
    evaluate.add_argument("--trust-checkpoints", action="store_true",
                          help="allow full unpickling and TorchScript: can run code in the files")
    evaluate.add_argument("--results", choices=("all", "run"), default="all",
                          help="results.csv holds every current result of the store (all: "
                               "earlier runs' checkpoints and tasks too) or this run's only")
    evaluate.add_argument("--allow-class-mismatch", action="store_true",
                          help="evaluate checkpoints whose class count differs from the data "
                               "set's (refused by default)")
    evaluate.add_argument("--surrogate", type=Path, default=None,
                          help="checkpoint the `transfer` task crafts its examples on")
    evaluate.add_argument("--ood", action="append", default=[], metavar="NAME=PATH",
                          help="OOD set for the `ood` task (repeatable; replaces the suite's sets)")
    evaluate.add_argument("--dry-run", action="store_true",
                          help="compute nothing: list the units (stored or not, shards), their "
                               "forward and backward image passes and estimated time, measured "
                               "on 100 images per task and architecture")
    evaluate.add_argument("--train-limit", type=int, default=None, metavar="N",
                          help="fit the `ood` task's feature-space detectors (mahalanobis, knn, "
                               "vim, react) on a seeded class-stratified subset of N training "
                               "images (0 = all; replaces the suite's train_limit)")
    evaluate.add_argument("--subset-file", type=Path, default=None, metavar="FILE",
                          help="evaluate exactly the images this text file lists (one path per "
                               "line, relative to the ImageNet val folder, e.g. "
                               "n01440764/ILSVRC2012_val_00000293.JPEG), in its order; replaces "
                               "the suite's [dataset] subset; --limit then takes a seeded, "
                               "class-stratified subset of them")
    _add_run_flags(evaluate)

    report = sub.add_parser("report", help="write leaderboard.md / .csv from DIR/results.csv")
    report.add_argument("out_dir", type=Path)
    report.add_argument("--baseline", default=None, metavar="CHECKPOINT",
                        help="show each value's difference to this checkpoint's row")
    report.add_argument("--ci", action="store_true",
                        help="show each value's 95 %% interval as ± in leaderboard.md")
    report.add_argument("--columns", default=None, metavar="NAMES",
                        help="leaderboard columns, comma-separated, in order: column names "
                             "('Clean err,PGD err,mCE'), families (clean, adversarial, "
                             "occlusion, corruption, affine, ood, calibration), Average; 'all': "
                             "every eps and condition its own column (default: one column per "
                             "family at its headline budget)")
    report.add_argument("--vector", choices=("svg", "pdf"), default=None,
                        help="also write every figure in this vector format, beside its PNG "
                             "in report/ (for papers)")
    report.add_argument("--recompute", action="store_true",
                        help="first re-reduce every metric from the stored per-sample records "
                             "(no model needed) and rewrite results.csv")
    report.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_plugin_flag(report)

    baseline = sub.add_parser("baseline", help="store DIR/results.csv as a JSON baseline")
    baseline.add_argument("out_dir", type=Path)
    baseline.add_argument("-o", "--output", type=Path, required=True, help="baseline JSON file")
    baseline.add_argument("--no-samples", action="store_true",
                          help="store no per-sample records beside it (then `check` can only "
                               "use the unpaired rule)")

    check = sub.add_parser("check", help="exit 1 if DIR/results.csv regressed against a baseline")
    check.add_argument("out_dir", type=Path)
    check.add_argument("--baseline", type=Path, required=True)
    check.add_argument("--tolerances", type=Path, default=None, metavar="TOML",
                       help="tolerance file: [default] and [metrics.\"NAME\"] tables, each "
                            "with `tolerance` and `reason`")
    check.add_argument("--tolerance", type=float, default=None,
                       help="allowed worsening in the metric's unit (default 0.5, or the "
                            "file's [default])")
    check.add_argument("--tolerance-for", action="append", default=[], metavar="METRIC=VALUE",
                       help="per-metric tolerance, METRIC or TASK/METRIC, e.g. ece=1.0 "
                            "(repeatable; beats the file)")
    check.add_argument("--allow-missing", action="store_true",
                       help="do not fail when a baseline metric is absent now")
    check.add_argument("--output", type=Path, default=None, metavar="FILE",
                       help="write every metric's verdict there (.csv: CSV, else a text table)")

    export = sub.add_parser("export", help="write DIR's per-sample records (--samples) or "
                                           "metrics to a .csv or .parquet file")
    export.add_argument("out_dir", type=Path)
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="FILE.csv or FILE.parquet (a folder with --robustbench)")
    export.add_argument("--samples", action="store_true",
                        help="one row per sample and condition (else one row per metric)")
    export.add_argument("--robustbench", action="store_true",
                        help="write RobustBench model cards (its JSON fields) of the standard "
                             "AutoAttack results into the folder -o")

    listing = sub.add_parser("list", help="show suites, tasks and architectures")
    _add_plugin_flag(listing)
    listing.add_argument("pattern", nargs="?", default="*",
                         help="filter architectures, e.g. 'res*'")

    corrupt = sub.add_parser("corrupt", help="generate a <NAME>-C corrupted copy of a data set")
    corrupt.add_argument("--dataset", required=True, help="digits | cifar10 | cifar100 | ...")
    corrupt.add_argument("--out", type=Path, required=True,
                         help="folder to write the corrupted copy into")
    corrupt.add_argument("--folder", default=None,
                         help="its folder name (default: the released archive's, e.g. "
                              "CIFAR-10-C, where the suites look for it)")
    corrupt.add_argument("--data-root", type=Path, default=None)
    corrupt.add_argument("--path", default=None, help="the clean data's folder (as in a suite)")
    corrupt.add_argument("--split", default=None)
    corrupt.add_argument("--table", default="auto", help="severity table: imagenet | cifar | "
                         "tinyimagenet | auto (by image size)")
    corrupt.add_argument("--seed", type=int, default=0)
    corrupt.add_argument("--corruptions", default="all", help="all | benchmark | extra | a,b,c")
    corrupt.add_argument("--layout", default="auto", help="npy (CIFAR-C) | tree (JPEG) | auto")
    corrupt.add_argument("--frost-textures", type=Path, default=None,
                         help="folder of frost photographs (default: synthetic textures)")
    corrupt.add_argument("--batch-size", type=int, default=256)
    corrupt.add_argument("--overwrite", action="store_true")
    corrupt.add_argument("--no-progress", action="store_true")

    demo = sub.add_parser("demo", help="train the digits zoo (once) and evaluate it")
    demo.add_argument("--zoo", type=Path, default=None, help="zoo folder (default OUT/zoo)")
    demo.add_argument("--retrain", action="store_true",
                      help="train every zoo member again, even where an unchanged one exists")
    _add_run_flags(demo)
    return parser


def _ood_sets(items: list[str]) -> dict[str, str]:
    """`--ood NAME=PATH` flags as the `sets` parameter of the `ood` task."""
    sets = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SuiteError(f"--ood {item!r}: expected NAME=PATH")
        sets[name] = path
    return sets


def _options(args: argparse.Namespace, ckpt_dir: Path, suite_name: str, **extra) -> RunOptions:
    import torch

    from benchmark.params import validate
    from benchmark.runner import RunOptions
    from benchmark.suites import RunParams, Suite, load_suite

    if args.threads is not None:
        if args.threads < 1:
            raise SuiteError(f"--threads {args.threads}: expected an integer >= 1")
        torch.set_num_threads(args.threads)
    suite = load_suite(suite_name)
    if args.tasks is not None:
        suite = suite.select([t.strip() for t in args.tasks.split(",") if t.strip()])
    if getattr(args, "ood", None):
        suite = suite.with_params("ood", "--ood", sets=_ood_sets(args.ood))
    if getattr(args, "subset_file", None) is not None:
        subset = str(args.subset_file.expanduser().resolve())
        suite = Suite(**{**suite.__dict__, "dataset": {**suite.dataset, "subset": subset}})
    if getattr(args, "train_limit", None) is not None:
        suite = suite.with_params("ood", "--train-limit", train_limit=args.train_limit)
    if getattr(args, "surrogate", None) is not None:
        suite = suite.with_params("transfer", "--surrogate",
                                  surrogate=str(args.surrogate.resolve()))

    auto_batch = args.batch_size == "auto"
    flags = {"batch_size": None if auto_batch else args.batch_size, "seed": args.seed,
             "limit": args.limit}
    run_params = validate(RunParams, {**suite.run, **{k: v for k, v in flags.items()
                                                      if v is not None}},
                          "command line (--seed, --batch-size, --limit)")
    workers = min(8, os.cpu_count() or 1) if args.workers is None else args.workers
    for flag, value, least in (("--workers", workers, 0), ("--shard-size", args.shard_size, 0),
                               ("--gpus-per-unit", args.gpus_per_unit, 0)):
        if value < least:
            raise SuiteError(f"{flag} {value}: expected a number >= {least}")
    if args.executor == "local" and (args.ray_address is not None or args.gpus_per_unit):
        raise SuiteError("--ray-address and --gpus-per-unit are for --executor ray")
    if args.executor == "ray" and args.device.startswith("cuda") and not args.gpus_per_unit:
        raise SuiteError(f"--device {args.device} with --executor ray needs --gpus-per-unit: "
                         "Ray shows no GPU to a job that reserves none")
    if not 0 <= args.min_agreement <= 100:
        raise SuiteError(f"--min-agreement {args.min_agreement}: expected a percentage 0-100")
    # absolute paths: Ray workers do not share this process's working directory
    if extra.get("data_root") is not None:
        extra["data_root"] = extra["data_root"].expanduser().resolve()
    plugins = tuple(str(Path(spec).resolve()) if spec.endswith(".py") else spec
                    for spec in getattr(args, "plugin", []))
    return RunOptions(ckpt_dir=ckpt_dir.expanduser().resolve(),
                      out_dir=args.out or Path("rubench-results"),
                      suite=suite, device=args.device, num_workers=workers,
                      progress=not args.no_progress, precision=args.precision,
                      min_agreement=args.min_agreement, auto_batch=auto_batch,
                      executor=args.executor, ray_address=args.ray_address,
                      gpus_per_unit=args.gpus_per_unit, shard_size=args.shard_size,
                      threads=args.threads, plugins=plugins,
                      **run_params, **extra)


def _finish(summary: RunSummary) -> int:
    for checkpoint, normalization, default in summary.normalization:
        print(f"{checkpoint}: {normalization}")
        if default:
            print(f"rubench: warning: {checkpoint}: mean/std come only from the suite's "
                  "defaults; if the model was trained with other statistics (e.g. 0.5 / 0.5), "
                  "set them in a sidecar TOML or with --mean/--std", file=sys.stderr)
    for warning in summary.warnings:
        print(f"rubench: warning: {warning}", file=sys.stderr)
    print(f"{summary.computed} task result(s) computed, {summary.reused} reused; "
          f"results in {summary.results_csv}")
    if summary.failures:
        print(f"\n{len(summary.failures)} failure(s):", file=sys.stderr)
        for failure in summary.failures:
            where = failure.checkpoint + (f" / {failure.task}" if failure.task else "")
            print(f"- {where}: {failure.error}", file=sys.stderr)
    return 0 if summary.ok else 1


def _list(pattern: str) -> None:
    """Suites, then every extension kind's entries whose names match `pattern`."""
    import benchmark.tasks  # noqa: F401  (importing registers the entries)
    import corruptions.generate  # noqa: F401
    from benchmark.archs import list_archs
    from benchmark.registry import find

    suites = [name for name in builtin_suites() if fnmatch.fnmatchcase(name, pattern)]
    print("suites:", ", ".join(suites) or "-")
    for kind, entries in find(pattern).items():
        if kind == "arch":
            for source, names in list_archs(pattern).items():
                print(f"architectures ({source}):", ", ".join(names) or "-")
            continue
        print(f"{kind}s:" + ("" if entries else " -"))
        for entry in entries:
            facts = ", ".join(f"{k}={v}" for k, v in entry.info.items())
            print(f"  {entry.name:<34} {entry.description}" + (f" [{facts}]" if facts else ""))


def _check(args: argparse.Namespace) -> int:
    from reports.check import (
        Tolerances,
        compare,
        failed,
        read_baseline,
        read_results,
        read_tolerances,
        report,
        unmatched,
    )

    per_metric = {}
    for item in args.tolerance_for:
        name, _, value = item.partition("=")
        try:
            per_metric[name.strip()] = float(value)
        except ValueError:
            raise ReportError(f"--tolerance-for {item!r}: expected METRIC=VALUE") from None
    tolerances = read_tolerances(args.tolerances) if args.tolerances else Tolerances()
    tolerances = tolerances.overridden(args.tolerance, per_metric)
    current, baseline = read_results(args.out_dir), read_baseline(args.baseline)
    for key in unmatched(tolerances, baseline, current):
        print(f"rubench: warning: tolerance for {key!r} matches no metric", file=sys.stderr)
    if tolerances.sampling_noise:
        from benchmark.paired import pairing_for

        pairing, rule = pairing_for(args.out_dir, args.baseline)
    else:
        pairing, rule = None, "tolerances alone decide (sampling_noise = false)"
    verdicts = compare(baseline, current, tolerances, args.allow_missing,
                       pairing.test if pairing is not None else None)
    print(report(verdicts, args.output), end="")
    print(f"rule: {rule}")
    return 1 if failed(verdicts) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        _load_plugins(args)
        if args.command == "list":
            _list(args.pattern)
            return 0
        if args.command == "report":
            from reports.html import write_report
            from reports.leaderboard import select_columns

            select_columns(args.columns)  # a bad name is refused before any work
            if args.recompute:
                from benchmark.recompute import recompute

                done, missing = recompute(args.out_dir, progress=not args.no_progress)
                print(f"recomputed {done} unit(s) from their records"
                      + (f"; {missing} without records kept as stored" if missing else ""))

            significance = None
            if args.baseline is not None:  # paired tests against it, where records allow
                from benchmark.paired import between_checkpoints

                significance = between_checkpoints(args.out_dir)
            written = write_report(args.out_dir, baseline=args.baseline, show_ci=args.ci,
                                   significance=significance, columns=args.columns,
                                   vector=args.vector)
            print(f"wrote {written[0]}, {written[1]} and {len(written) - 2} files in "
                  f"{args.out_dir / 'report'} (open report/index.html)")
            return 0
        if args.command == "baseline":
            from benchmark.paired import samples_path, store_units, write_samples
            from reports.check import write_baseline

            units = {} if args.no_samples else store_units(args.out_dir)
            archive = samples_path(args.output)
            digest = None
            if units:  # they let `rubench check` pair its tests
                digest = write_samples(units, archive)
            else:
                archive.unlink(missing_ok=True)  # an older archive never outlives its baseline
            count = write_baseline(args.out_dir, args.output, digest)
            print(f"wrote {count} metrics to {args.output}")
            if units:
                print(f"wrote the per-sample records of {len(units)} units to {archive}")
            return 0
        if args.command == "check":
            return _check(args)
        if args.command == "export":
            from benchmark.export import export, robustbench_cards

            if args.robustbench:
                for card in robustbench_cards(args.out_dir, args.output):
                    print(f"wrote {card}")
                return 0
            rows = export(args.out_dir, args.output, args.samples)
            print(f"wrote {rows} {'sample' if args.samples else 'metric'} rows to {args.output}")
            return 0
        if args.command == "corrupt":
            from benchmark.corrupt import materialize

            corruptions = args.corruptions if args.corruptions in ("all", "benchmark", "extra") \
                else [c.strip() for c in args.corruptions.split(",") if c.strip()]
            folder = materialize(args.dataset, args.out, data_root=args.data_root,
                                 path=args.path, split=args.split, table=args.table,
                                 seed=args.seed, corruptions=corruptions, layout=args.layout,
                                 frost_textures=args.frost_textures, batch_size=args.batch_size,
                                 overwrite=args.overwrite, progress=not args.no_progress,
                                 folder=args.folder)
            print(f"wrote {folder}")
            return 0
        from benchmark.runner import run

        if args.command == "evaluate":
            from benchmark.checkpoints import check_meta

            cli_meta = {"arch": args.arch, "num_classes": args.num_classes, "mean": args.mean,
                        "std": args.std, "input_size": args.input_size}
            for key, value in cli_meta.items():  # refused before any checkpoint is read
                if value is not None:
                    check_meta(key, value, f"--{key.replace('_', '-')}")
            opts = _options(args, args.ckpt_dir, args.suite, data_root=args.data_root,
                            trust_checkpoints=args.trust_checkpoints, cli_meta=cli_meta,
                            allow_class_mismatch=args.allow_class_mismatch,
                            results=args.results)
            if args.dry_run:
                from benchmark.plan import describe, dry_run

                planned, failed = dry_run(opts)
                print(describe(planned, failed))
                return 1 if failed else 0
            return _finish(run(opts))
        from benchmark.corrupt import materialize
        from benchmark.zoo import build_zoo
        from reports.html import write_report

        out = args.out or Path("rubench-demo")
        zoo = args.zoo or out / "zoo"
        build_zoo(zoo, progress=not args.no_progress, retrain=args.retrain)
        materialize("digits", out / "data", progress=not args.no_progress)  # digits-C, once
        args.out = out
        code = _finish(run(_options(args, zoo, "digits", data_root=out / "data")))
        import pandas as pd

        from reports.leaderboard import leaderboard, summary

        written = write_report(out)
        print("\n" + summary(leaderboard(pd.read_csv(out / "results.csv", low_memory=False)))
              + f"\n\nFull leaderboard: {written[0]} (and .csv); every table and figure: "
              f"{out / 'report' / 'index.html'}")
        return code
    except (RubenchError, ReportError) as exc:
        print(f"rubench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
