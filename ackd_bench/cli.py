"""`ackd-bench` command line: parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import AckdError, DatasetError, failure_line
from .experiment import BUILTIN_LOSSES


def _cmd_publish(args: argparse.Namespace) -> int:
    from .hub import publish_dataset, publish_run

    path = Path(args.path)
    if (path / "manifest.json").is_file():
        done = publish_dataset(path, args.repo, allow_restricted=args.allow_restricted_licence, private=args.private)
        print(f"{path}: published to the hub's dataset {done['repo']} at {done['revision'][:12]}, tagged {done['tag']}")
    else:
        done = publish_run(path, args.repo, private=args.private)
        print(f"{path}: published to the hub's model {done['repo']} at {done['revision'][:12]}; use it as "
              f"--teacher hf://{done['repo']}/best.pt")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from .data.build import build_dataset
    from .data.locate import data_root

    out = Path(args.out) if args.out else (Path(args.root) if args.root else data_root()) / args.dataset
    if args.from_hub:
        from .hub import download_dataset

        manifest = download_dataset(args.from_hub, out, expect_dataset=args.dataset, progress=not args.quiet)
        print(f"{out}: {manifest.dataset} (version {manifest.dataset_version[:16]}) from the hub's "
              f"{args.from_hub}, every shard verified")
        return 0
    result = build_dataset(args.dataset, out, force=args.force, progress=not args.quiet, source_dir=args.source_dir,
                           download=args.download, workers=args.workers, require_paired=args.require_paired)
    version = result.manifest.dataset_version[:16]
    if result.status == "up-to-date":
        print(f"{out}: already built and verified (version {version}); nothing to do (use --force to rebuild)")
    else:
        print(f"{out}: built {result.manifest.dataset} (version {version})")
    if not args.no_mi and result.manifest.mi is None:
        from .data.analyses import run_mi

        try:
            mi = run_mi(out)
        except DatasetError as exc:  # the dataset is built; only the default analysis does not fit it
            print(f"within-class MI skipped: {exc}; run `ackd-bench mi {out} --pairs N` with a smaller N")
        else:
            _print_mi(mi)
    return 0


def _print_mi(mi: dict) -> None:
    s = mi["summary"]
    paired = "n/a: no paired control" if s.mean_paired is None else f"{s.mean_paired:.3f}"
    print(f"within-class MI (nats, mean over classes): unpaired {s.mean_unpaired:.3f}, "
          f"permutation baseline {s.mean_permutation:.3f}, paired control {paired}; {mi['csv']}, {mi['png']}")


def _cmd_mi(args: argparse.Namespace) -> int:
    from .data.analyses import run_mi

    _print_mi(run_mi(args.dataset_dir, pairs=args.pairs, bins=args.bins, seed=args.seed, out_dir=args.out))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .data.manifest import describe, verify_manifest

    manifest = verify_manifest(args.dataset_dir, checksums=not args.no_verify, progress=sys.stderr.isatty())
    print(describe(manifest))
    return 0


def _run_options(args: argparse.Namespace):
    from .train.api import RunOptions

    out = getattr(args, "out", None)  # a sweep has no --out, --resume or --force: its runs are the grid's
    return RunOptions(run_dir=Path(out) if out else None, runs_root=Path(args.runs_root),
                      resume=getattr(args, "resume", False), force=getattr(args, "force", False), device=args.device,
                      workers=args.workers,
                      progress=not args.quiet, resident=args.resident, checkpoint_every=args.checkpoint_every,
                      compile=args.compile, threads=args.threads, precision=args.precision,
                      loggers=tuple(args.logger), sync_batchnorm=args.sync_batchnorm,
                      teacher_mode="live" if getattr(args, "live_teacher", False) else "cache",
                      log_transport_cost=getattr(args, "log_transport_cost", False))


def _request(args: argparse.Namespace, kind: str, arch: str | None):
    """The run the arguments describe, built once and passed whole (train.request)."""
    from .train.request import RunRequest, SemBridgeSettings

    method = {"teacher": "teacher", "matcher": "matcher"}.get(kind, getattr(args, "method", "none"))
    sembridge = SemBridgeSettings(getattr(args, "gamma", None), getattr(args, "heads", None),
                                  getattr(args, "lambda1", None), _dynm(getattr(args, "dynm", None)))
    return RunRequest(kind, str(args.dataset_dir), arch, method=method, teacher=getattr(args, "teacher", None),
                      matcher=getattr(args, "matcher", None), profile=_profile(args), seed=args.seed,
                      overrides=_overrides(args), ablation=getattr(args, "ablate", None) or (),
                      sembridge=sembridge)


def _say_chosen(parts: list[str]) -> None:
    if parts and int(os.environ.get("RANK", "0")) == 0:
        print("ackd-bench: " + "; ".join(parts))


def _choose_dataset(args: argparse.Namespace) -> None:
    """DATASET_DIR or --dataset NAME|PATH, else what the data root holds (data.locate); then the
    profile's default for that dataset. Says what it chose when the user did not."""
    from .data.locate import choose_dataset

    if args.dataset_dir and args.dataset and Path(args.dataset_dir) != Path(args.dataset):
        raise AckdError(f"two datasets given ({args.dataset_dir} and --dataset {args.dataset}): give one")
    given = args.dataset or args.dataset_dir
    chosen = choose_dataset(given, progress=not args.quiet)
    args.dataset_dir = chosen.path
    said = [] if chosen.how == "given" else [f"dataset {chosen.name} ({chosen.path}, {chosen.how})"]
    if args.profile is None:
        args.profile = chosen.default_profile()
        said.append(f"profile {args.profile} (the default on {chosen.name}; --profile to choose another)")
    _say_chosen(said)


def _choose_datasets(args: argparse.Namespace) -> None:
    """The sweep's datasets, each chosen as one run's; `demo` is the default profile only when every one is toy."""
    from .data.locate import PAPER_PROFILE, choose_dataset

    chosen = [choose_dataset(d, progress=not args.quiet) for d in args.datasets or [None]]
    args.datasets = [str(c.path) for c in chosen]
    said = [f"dataset {c.name} ({c.path}, {c.how})" for c in chosen if c.how != "given"]
    if args.profile is None:
        defaults = {c.default_profile() for c in chosen}
        args.profile = defaults.pop() if len(defaults) == 1 else PAPER_PROFILE
        said.append(f"profile {args.profile} (the default on {', '.join(sorted({c.name for c in chosen}))})")
    _say_chosen(said)


def _profile(args: argparse.Namespace):
    """--profile NAME|PATH.yaml, loaded here when --set changes it (then every run reads the same dict)."""
    if not args.set:
        return args.profile
    from .train.profiles import load_profile

    return load_profile(args.profile, sets=args.set)


def _overrides(args: argparse.Namespace) -> dict:
    return {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}


def _print_result(result: dict) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    oa = "n/a (multi-label)" if result["oa"] is None else f"{result['oa']:.4f}"
    print(f"{result['run_dir']}: test OA {oa}, macro-F1 {result['f1']:.4f} (n={result['n_test']}), "
          f"best epoch {result['best_epoch'] + 1}/{result['epochs']}")


TRAIN_RESUME_HINT = ("add --resume to the same command to continue from the last checkpoint (last.pt, written every "
                     "--checkpoint-every seconds)")


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from .train.api import run

    _choose_dataset(args)
    result = run(_request(args, "teacher", args.arch), _run_options(args))
    _print_result(result)
    return 0


def _dynm(text: str | None):
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise AckdError(f"--dynm {text}: expected three integers E0,DELTA,GROWTH (Eq. 12), e.g. 30,30,5")
    return tuple(int(p) for p in parts)


def _cmd_train_student(args: argparse.Namespace) -> int:
    from .train.api import run

    _choose_dataset(args)
    result = run(_request(args, "student", args.arch), _run_options(args))
    _print_result(result)
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .train.api import rerun

    options = _run_options(args)
    replay = rerun(args.run_dir, options, dataset=args.dataset)
    same = ("the same config hash" if replay.same_config else
            f"config hash {replay.config_hash[:12]}, not the original's {str(replay.original_hash)[:12]}: the code or "
            "a checkpoint it reads has changed")
    print(f"ackd-bench: repeated {args.run_dir} with {same}")
    if "oa" in replay.result:
        _print_result(replay.result)
    else:
        print(f"{replay.result['run_dir']}: matcher val top-1 pair retrieval {replay.result['val_top1']:.4f}")
    return 0


def _cmd_transport_cost(args: argparse.Namespace) -> int:
    from .train.transport import plot_transport, transport_cost_from_checkpoints

    if args.plot:
        print(plot_transport(args.plot, args.out))
        return 0
    if not (args.dataset_dir and args.teacher and args.student):
        raise AckdError("transport-cost needs DATASET_DIR, --teacher and --student (or --plot RUN_DIR ...)")
    cost = transport_cost_from_checkpoints(args.dataset_dir, args.teacher, args.student, split=args.split,
                                           samples=args.samples, seed=args.seed, device=args.device)
    symmetric = "n/a: no paired control" if cost["symmetric"] is None else f"{cost['symmetric']:.4f}"
    print(f"empirical W1 between teacher and student logits on {args.split} ({cost['n']} samples per side): "
          f"asymmetric (ACKD) {cost['asymmetric']:.4f}, symmetric control (SCKD) {symmetric}")
    return 0


def _cmd_train_matcher(args: argparse.Namespace) -> int:
    from .train.api import run

    _choose_dataset(args)
    result = run(_request(args, "matcher", args.arch), _run_options(args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{result['run_dir']}: matcher val top-1 pair retrieval {result['val_top1']:.4f}, "
              f"CLIP loss {result['val_clip_loss']:.4f}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .harness.evaluate import run_eval
    from .harness.plan import RunPlan

    _choose_dataset(args)

    def epochs(value):
        return {"epochs": value} if value is not None else {}

    plan = RunPlan(teacher_overrides=epochs(args.teacher_epochs), matcher_arch=args.matcher_arch,
                   matcher_overrides=epochs(args.matcher_epochs), options=_run_options(args))
    results = run_eval(_request(args, "student", None), pair=args.pair, plan=plan)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{'pair':<6}{'method':<22}{'OA':>8}{'F1':>8}  run")
        for r in results:
            print(f"{r['pair']:<6}{r['method'] + (' -' + r['ablation'] if r['ablation'] else ''):<22}"
                  f"{r['oa']:>8.4f}{r['f1']:>8.4f}  {r['run_dir']}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .harness.grid import expand_grid
    from .harness.plan import RunPlan, read_plan
    from .harness.runner import check_runs_per_gpu
    from .harness.sweep import run_sweep

    if args.replay:
        from .data.locate import built_for_plan

        requests, config, args.launcher, args.name, slurm = read_plan(args.replay)
        if not args.dry_run:
            for dataset in sorted({r.dataset for r in requests}):
                built_for_plan(dataset, args.replay, progress=not args.quiet)
    else:
        check_runs_per_gpu(args.runs_per_gpu)
        _choose_datasets(args)
        requests = expand_grid(args.datasets, methods=args.methods, pairs=args.pairs, seeds=args.seeds,
                               tables=args.tables)
        config = RunPlan(profile=_profile(args), student_overrides=_overrides(args),
                         teacher_overrides={"epochs": args.teacher_epochs} if args.teacher_epochs else {},
                         matcher_overrides={"epochs": args.matcher_epochs} if args.matcher_epochs else {},
                         matcher_arch=args.matcher_arch, runs_per_gpu=args.runs_per_gpu, options=_run_options(args))
        if args.retries < 0:
            raise AckdError(f"--retries {args.retries}: expected 0 or more")
        slurm = {"timeout_min": args.timeout_min}
        if args.launcher == "slurm":  # checked against the partition before anything is submitted
            slurm.update(partition=args.partition, gpus=args.gpus, cpus=args.cpus, mem=args.mem,
                         parallel=args.parallel, retries=args.retries)
    if args.dry_run:
        for request in requests:
            print(f"stage {request.stage}  {request.dataset}  {request.label}")
        print(f"{len(requests)} runs")
        return 0
    ledger = run_sweep(requests, config, launcher=args.launcher, name=args.name, slurm=slurm, progress=not args.quiet)
    entries = [ledger.entries.get(r.key, {}) for r in requests]
    done = sum(e.get("status") == "done" for e in entries)
    failed = [e for e in entries if e.get("status") == "failed"]
    others = sorted({e["status"] for e in entries if e.get("status") not in (None, "done", "failed")})
    other = "".join(f", {sum(e.get('status') == s for e in entries)} {s}" for s in others)  # cancelled, preempted
    print(f"sweep '{args.name}': {done}/{len(requests)} runs done, {len(failed)} failed{other} (ledger {ledger.path})")
    for entry in failed:
        print(f"  failed: {entry['kind']}:{entry['method']} {entry['teacher']}/{entry['student']} seed {entry['seed']}: "
              f"{entry['error']}")
    return 1 if failed or others else 0  # cancelled or stopped runs are not done either


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard.board import default_board, predictions_store, read_board, readme_path, submit, submit_runs
    from .leaderboard.render import README_MARK, build_table, render

    board_path = Path(args.board) if args.board else default_board()
    if args.action == "submit":
        if args.results:
            added, source = submit(args.results, board_path, readme=True), ""
        else:
            added, held = submit_runs(args.runs_root, board_path, readme=True)
            source = f" from the runs under {args.runs_root}/ ({held} already on the board)"
        if not added:
            print(f"{board_path}: nothing to add{source}")
            return 0
        target = readme_path(board_path.resolve())
        generated = target.exists() and target.read_text(errors="replace").startswith(README_MARK)
        print(f"{board_path}: {added} row(s) added{source}; " + (f"{target} regenerated" if generated else
              f"{target} is not one this tool wrote: left alone (`leaderboard show` prints the tables)"))
        return 0
    board = read_board(board_path)
    if args.dataset:
        board = [r for r in board if r.dataset in args.dataset]
    if args.action == "plot":
        from .leaderboard.plot import plot_oa

        print(plot_oa(board, args.out or "leaderboard_oa.png"))
        return 0
    if args.action == "site":
        from .leaderboard.site import write_site

        print(write_site(board, args.out or "leaderboard-site", datasets=args.dataset or None, min_seeds=args.min_seeds,
                         store=predictions_store(board_path.resolve())))
        return 0
    datasets = args.dataset or None
    for number in args.table or [3, 4, 5, 6]:
        table = build_table(number, board, datasets=datasets, with_paper=not args.no_paper, min_seeds=args.min_seeds)
        print(render(table, args.format))
        print()
    if args.stats:
        from .leaderboard.summary import render_summary

        print(render_summary(board, "html" if args.format == "html" else "md", predictions_store(board_path.resolve())))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .leaderboard.paired import compare_report

    if args.resamples < 100:
        raise AckdError(f"--resamples {args.resamples}: expected at least 100 bootstrap resamples")
    print(compare_report(args.runs_root, *args.methods, resamples=args.resamples))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .data.locate import data_root
    from .harness.demo import run_demo

    if args.seeds is not None and args.seeds < 1:
        raise AckdError(f"--seeds {args.seeds}: expected at least 1 student seed")
    seeds = {} if args.seeds is None else {"seeds": args.seeds}  # else the demo's own default
    run_demo(args.root or data_root(), args.runs_root, pair=args.pair, device=args.device, progress=not args.quiet,
             threads=args.threads, **seeds)
    return 0


METHOD_HELP = (f"none (no distillation), a loss ({', '.join(BUILTIN_LOSSES)}, an installed outside method, or "
               "package.module:Class), sembridge (= sembridge+kd) or sembridge+LOSS")


def _add_sembridge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matcher", help="matcher checkpoint (best.pt of a train-matcher run), for SemBridge's SSM")
    parser.add_argument("--ablate", help="switch SemBridge components off: comma-separated ssm,dynm,ot1,ot2 (Table 6)")
    parser.add_argument("--gamma", type=float, help="DynM temperature (default 3)")
    parser.add_argument("--heads", type=int, help="Planner heads H (default 8)")
    parser.add_argument("--lambda1", type=float, help="KD weight lambda_1 (default 0.4). The OT weight is the profile's `ot` (paper: the "
                        "reference's 0.3 for every lambda_1) or 1 - lambda_1 (bench: Eq. 20, lambda_1 in [0, 1])")
    parser.add_argument("--dynm", help="DynM schedule E0,DELTA,GROWTH (Eq. 12; default per dataset)")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    _add_dataset_arguments(parser)
    parser.add_argument("--arch", default="R", help="resnet34|mobilenetv2|shufflenetv2 or R|M|S (default R)")
    _add_profile_arguments(parser)
    parser.add_argument("--seed", type=int, help="default: the profile's seed")
    parser.add_argument("--epochs", type=int, help="override the profile's epochs")
    parser.add_argument("--batch-size", type=int, help="override the profile's batch size (global, across ranks)")
    parser.add_argument("--lr", type=float, help="override the profile's learning rate")
    parser.add_argument("--out", help="run directory (default: RUNS_ROOT/DATASET/LABEL-CONFIGHASH)")
    parser.add_argument("--runs-root", default="runs", help="parent of default run directories (default ./runs)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    parser.add_argument("--force", action="store_true", help="discard an earlier run in the same directory")
    parser.add_argument("--device", default="auto",
                        help="auto (default: this process's GPU, LOCAL_RANK under torchrun, else the CPU), cpu, cuda or cuda:N")
    _add_speed_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


DATASET_HELP = ("a benchmark's name (toy, s2s-eu, s2s-cn, m2s-gl: built under the data root, ./data or "
                "$ACKD_BENCH_DATA) or a folder made by `ackd-bench build`; default: the only benchmark built under the "
                "data root, else toy, built there on the spot")


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset_dir", nargs="?", metavar="DATASET_DIR", help="a folder made by `ackd-bench build` "
                        "(or use --dataset)")
    parser.add_argument("--dataset", metavar="NAME|PATH", help=DATASET_HELP)


def _add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile",
                        help="training profile: paper (the reference code; the default on the real benchmarks), "
                             "bench, demo (the default on toy), smoke, or a PATH.yaml of the same form (see "
                             "recipes/profiles/)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one profile value, e.g. student.epochs=50, options.matcher_loss=reference, "
                             "methods.dkd.beta=4 (repeatable; recorded in config.json and the config hash)")


def _add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, help="DataLoader workers of streamed splits (default 0 on CPU, 4 on CUDA)")
    parser.add_argument("--resident", default="auto", choices=["auto", "on", "off"],
                        help="hold the training splits in device memory: auto (default, when they fit in half the "
                             "free memory), on, off (stream them from the shards)")
    parser.add_argument("--checkpoint-every", type=float, default=600.0, metavar="SECONDS",
                        help="write last.pt at most this often (default 600; 0: every epoch); always at the end and "
                             "on SIGUSR1, SIGUSR2 (Slurm's preemption notice) and SIGTERM")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbones (off by default)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                        help="training precision: auto (default: bf16 on GPUs that compute it natively, fp16 with loss "
                             "scaling on older ones such as V100 and T4, fp32 on CPU); recorded in the result")
    parser.add_argument("--logger", action="append", default=[], metavar="NAME",
                        help="also log each epoch to tensorboard, wandb or mlflow (repeatable or comma-separated; "
                             "log.csv is always written; wandb runs offline and mlflow to RUN_DIR/mlruns unless "
                             "their own environment variables say otherwise)")
    parser.add_argument("--sync-batchnorm", action="store_true",
                        help="under torchrun on GPUs: BatchNorm statistics over all ranks' batches (SyncBatchNorm), as "
                             "one GPU computes them at the same global batch; off by default (each rank's own share)")
    parser.add_argument("--threads", type=int, help="CPU threads per run (default: OMP_NUM_THREADS if set, else the cores this "
                                                    "process may use, divided by the runs started at once, less those other "
                                                    "processes keep busy)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ackd-bench",
        description="Asymmetric cross-modal knowledge distillation benchmarks (MS teacher -> unpaired RGB student).",
    )
    parser.add_argument("--version", action="version", version=f"ackd-bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build a benchmark dataset (HDF5 shards + manifest)")
    build.add_argument("dataset", help="recipe name: toy, s2s-eu, s2s-cn, m2s-gl (or any recipe in $ACKD_BENCH_RECIPES)")
    build.add_argument("--out", help="output directory (default: ROOT/DATASET)")
    build.add_argument("--root", help="parent directory for datasets (default: $ACKD_BENCH_DATA, else ./data)")
    build.add_argument("--source-dir", help="directory holding source archives or extracted trees you already have "
                       "(required for the local-only NaSC-TG2 and AID)")
    build.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                       help="download missing source archives (default) or fail with where to get them")
    build.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.add_argument("--no-mi", action="store_true", help="skip the within-class MI analysis")
    build.add_argument("--workers", type=int, default=0, help="decode and compress in N processes (default 0: inline)")
    build.add_argument("--require-paired", action="store_true",
                       help="stop when the recipe's paired control (EuroSAT RGB, NaSC-TG2 RGB: only for the MI and "
                            "transport-cost analyses) is missing, instead of building without it")
    build.add_argument("--from-hub", metavar="ORG/NAME[@REV]",
                       help="download a published build from the Hugging Face hub (huggingface_hub's cache, resumable) "
                            "and verify every shard, instead of building it")
    build.set_defaults(func=_cmd_build)

    publish = commands.add_parser("publish", help="upload a built dataset directory, or a teacher or matcher run, to "
                                                  "the Hugging Face hub")
    publish.add_argument("path", help="a dataset directory (manifest.json) or a finished teacher/matcher run directory")
    publish.add_argument("--repo", required=True, help="ORG/NAME of the hub repository (created if missing)")
    publish.add_argument("--private", action="store_true", help="create the repository private")
    publish.add_argument("--allow-restricted-licence", action="store_true",
                         help="publish sides whose source licence does not allow redistribution (only if you hold "
                              "the rights)")
    publish.set_defaults(func=_cmd_publish)

    mi = commands.add_parser("mi", help="within-class mutual information between the MS and RGB sides (Fig. 6)")
    mi.add_argument("dataset_dir")
    mi.add_argument("--pairs", type=int, help="pairs per class (default: min(100, smallest class))")
    mi.add_argument("--bins", type=int, default=16, help="intensity bins K (default 16)")
    mi.add_argument("--seed", type=int, default=0)
    mi.add_argument("--out", help="output directory for mi.csv and mi.png (default DATASET_DIR/analysis)")
    mi.set_defaults(func=_cmd_mi)

    info = commands.add_parser("info", help="verify a built dataset and print its manifest as a table")
    info.add_argument("dataset_dir")
    info.add_argument("--no-verify", action="store_true", help="check shard sizes only, skip sha256")
    info.set_defaults(func=_cmd_info)

    teacher = commands.add_parser("train-teacher", help="train the MS teacher (select on val, test once)")
    _add_run_arguments(teacher)
    teacher.set_defaults(func=_cmd_train_teacher, resume_hint=TRAIN_RESUME_HINT)

    student = commands.add_parser("train-student", help="train an RGB student, alone or distilled from a teacher")
    _add_run_arguments(student)
    student.add_argument("--method", default="none", help=METHOD_HELP)
    student.add_argument("--teacher", help="teacher checkpoint (best.pt of a train-teacher run)")
    student.add_argument("--live-teacher", action="store_true",
                         help="run the teacher on every batch instead of reading its cached outputs")
    student.add_argument("--log-transport-cost", action="store_true",
                         help="log the teacher-student Wasserstein distance every epoch (Fig. 2)")
    _add_sembridge_arguments(student)
    student.set_defaults(func=_cmd_train_student, resume_hint=TRAIN_RESUME_HINT)

    transport = commands.add_parser("transport-cost", help="Wasserstein distance between teacher and student outputs")
    transport.add_argument("dataset_dir", nargs="?")
    transport.add_argument("--teacher", help="teacher checkpoint")
    transport.add_argument("--student", help="student checkpoint")
    transport.add_argument("--split", default="test", choices=["train", "val", "test"])
    transport.add_argument("--samples", type=int, help="samples per side (default: the smaller side)")
    transport.add_argument("--seed", type=int, default=0)
    transport.add_argument("--device", default="auto")
    transport.add_argument("--plot", nargs="+", metavar="RUN_DIR", help="plot the logged per-epoch curves instead")
    transport.add_argument("--out", default="transport_cost.png", help="--plot: output PNG")
    transport.set_defaults(func=_cmd_transport_cost)

    matcher = commands.add_parser("train-matcher", help="train SemBridge's SSM matcher on MS train images")
    _add_run_arguments(matcher)
    matcher.set_defaults(func=_cmd_train_matcher, arch=None, resume_hint=TRAIN_RESUME_HINT)

    replay = commands.add_parser("rerun", help="repeat a run from its folder's recorded request (request.json)")
    replay.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (teacher, student or matcher)")
    replay.add_argument("--dataset", metavar="PATH", help="the dataset's folder, where it has moved since the run")
    replay.add_argument("--out", help="where the repeat runs (default: RUN_DIR-rerun)")
    replay.add_argument("--runs-root", default="runs", help=argparse.SUPPRESS)
    replay.add_argument("--resume", action="store_true", help="continue an interrupted repeat")
    replay.add_argument("--force", action="store_true", help="discard an earlier repeat in the same folder")
    replay.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (as train-*)")
    _add_speed_arguments(replay)
    replay.add_argument("--quiet", action="store_true", help="no progress bars")
    replay.set_defaults(func=_cmd_rerun, resume_hint=TRAIN_RESUME_HINT)

    evaluate = commands.add_parser(
        "eval", help="train what a method needs (teacher, matcher) and its students for one or all pairs")
    _add_run_arguments(evaluate)
    evaluate.add_argument("--method", default="sembridge", help=METHOD_HELP)
    evaluate.add_argument("--pair", default="R/R", help="teacher/student pair R/R (default), M/M, S/S, R/M, R/S, M/S or all")
    evaluate.add_argument("--teacher", help="use this teacher checkpoint instead of training one")
    evaluate.add_argument("--teacher-epochs", type=int, help="override the profile's teacher epochs")
    evaluate.add_argument("--matcher-epochs", type=int, help="override the profile's matcher epochs")
    evaluate.add_argument("--matcher-arch", help="matcher encoders (default resnet34, as the reference)")
    _add_sembridge_arguments(evaluate)
    evaluate.set_defaults(func=_cmd_eval)

    sweep = commands.add_parser("sweep", help="run the grid of the paper's Tables 3-6 (skips finished runs)")
    sweep.add_argument("--datasets", "--dataset", nargs="+", metavar="NAME|PATH", help="the benchmarks to run, "
                       "each " + DATASET_HELP.replace("; default:", " (default:", 1) + ")")
    sweep.add_argument("--methods", nargs="+", help="restrict to these methods (default: every built-in method of the "
                                                    "tables); an installed outside LOSS adds its rows to Tables 4 and 5")
    sweep.add_argument("--pairs", nargs="+", default=["all"], help="pairs (default all)")
    sweep.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    sweep.add_argument("--tables", nargs="+", type=int, default=[3, 4, 5, 6])
    _add_profile_arguments(sweep)
    sweep.add_argument("--epochs", type=int, help="override the students' epochs")
    sweep.add_argument("--batch-size", type=int)
    sweep.add_argument("--lr", type=float)
    sweep.add_argument("--teacher-epochs", type=int)
    sweep.add_argument("--matcher-epochs", type=int)
    sweep.add_argument("--matcher-arch")
    sweep.add_argument("--launcher", default="local", help="local, submitit-local or slurm")
    sweep.add_argument("--name", default="sweep", help="ledger name under RUNS_ROOT/sweeps/")
    sweep.add_argument("--runs-root", default="runs")
    sweep.add_argument("--device", default="auto")
    _add_speed_arguments(sweep)
    sweep.add_argument("--runs-per-gpu", type=int, default=1, metavar="K",
                       help="run K runs at once on one GPU, each in its own process (default 1; lowered to what "
                            "fits in free GPU memory), or on the CPU, each on its share of the cores; on Slurm, "
                            "one array task per group of K")
    sweep.add_argument("--partition", help="Slurm partition")
    sweep.add_argument("--parallel", type=int, help="Slurm array parallelism")
    sweep.add_argument("--gpus", type=int, help="GPUs per Slurm job (default 1; 0 with --device cpu)")
    sweep.add_argument("--cpus", type=int, help="CPUs per Slurm job (default: its runs' threads and loader workers, "
                                                "at most a node's)")
    sweep.add_argument("--mem", help="memory per Slurm job, as sbatch writes it: 16G, 4000M (default: its runs' "
                                     "datasets plus each run's model, activations and CUDA context, at most a node's)")
    sweep.add_argument("--retries", type=int, default=1,
                       help="submit a Slurm job that died (killed, out of memory) again this many times (default 1)")
    sweep.add_argument("--timeout-min", type=int, default=24 * 60)
    sweep.add_argument("--replay", metavar="PLAN", help="run a sweep again exactly as written in its plan "
                       "(RUNS_ROOT/sweeps/NAME.sweep.json, written by every sweep), skipping what is done; the "
                       "options that choose the grid and its settings are then taken from the plan")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    sweep.add_argument("--quiet", action="store_true")
    sweep.set_defaults(func=_cmd_sweep)

    board = commands.add_parser("leaderboard", help="submit results to the leaderboard, show or plot it")
    board.add_argument("action", choices=["submit", "show", "plot", "site"])
    board.add_argument("results", nargs="*", help="submit: result.json / result.csv files or run directories "
                       "(default: every finished run under --runs-root that the board does not hold yet)")
    board.add_argument("--runs-root", default="runs", help="submit with no files: where the runs are (default ./runs)")
    board.add_argument("--board", help="leaderboard CSV (default: your own board, $ACKD_BENCH_HOME/leaderboard.csv "
                                       "or ~/.local/share/ackd-bench/leaderboard.csv; the project's published board "
                                       "is leaderboard/leaderboard.csv)")
    board.add_argument("--table", type=int, action="append", choices=[3, 4, 5, 6], help="show: which table(s)")
    board.add_argument("--dataset", action="append", help="show/plot: only these datasets")
    board.add_argument("--format", default="md", choices=["md", "csv", "latex", "html"])
    board.add_argument("--no-paper", action="store_true", help="show: leave out the paper's reference rows")
    board.add_argument("--out", help="plot: output PNG (default leaderboard_oa.png); site: output folder "
                                     "(default leaderboard-site)")
    board.add_argument("--min-seeds", type=int, default=3,
                       help="show/site: seeds every cell of a row needs for the row to count as complete (default 3)")
    board.add_argument("--stats", action="store_true",
                       help="show: add the across-cell statistics (IQM, probability of improvement)")
    board.set_defaults(func=_cmd_leaderboard)

    compare = commands.add_parser(
        "compare", help="paired difference of two methods (OA, macro-F1) with a 95%% interval over seeds and test "
                        "items and the design's detectable difference")
    compare.add_argument("--runs-root", default="runs", help="where the runs are (default ./runs)")
    compare.add_argument("--methods", nargs=2, required=True, metavar=("A", "B"),
                         help="two methods as the runs name them (none, kd, sembridge, sembridge+dkd, ...); "
                              "METHOD:ABLATION for an ablation (sembridge:dynm is SemBridge without DynM)")
    compare.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    compare.set_defaults(func=_cmd_compare)

    demo = commands.add_parser("demo", help="build toy, train teacher + matcher, run none/kd/sembridge, print Table 3")
    demo.add_argument("--root", help="parent directory for datasets (default: $ACKD_BENCH_DATA, else ./data)")
    demo.add_argument("--runs-root", default="runs")
    demo.add_argument("--pair", default="S/S")
    demo.add_argument("--seeds", type=int, help="student seeds, 0..N-1 (default 2: about 3 minutes on 2 CPU cores); "
                      "the table shows mean ± std over them")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--threads", type=int, help="CPU threads (default: the free cores)")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show a name gets it escaped, not a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `leaderboard submit --board B.csv r.json`: files after an option are still files to submit
    if extra and isinstance(getattr(args, "results", None), list) and not any(e.startswith("-") for e in extra):
        args.results += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", "rerun the same command to resume")
        print(f"ackd-bench: interrupted; {hint}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place a failure becomes a line (errors.failure_line)
        if os.environ.get("ACKD_BENCH_DEBUG") and not isinstance(exc, AckdError):
            raise
        line, status = failure_line(exc, _run_folder(args))
        print(line, file=sys.stderr)
        return status


def _run_folder(args: argparse.Namespace) -> Path | None:
    """The run folder a command was writing, where a bug's traceback belongs (a run's own folder only)."""
    out = getattr(args, "out", None)
    if out and (Path(out) / "request.json").is_file():
        return Path(out)
    return None

if __name__ == "__main__":
    sys.exit(main())
