"""`ackd-bench` command line: parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import AckdError


def _cmd_build(args: argparse.Namespace) -> int:
    from .data.build import build_dataset

    out = Path(args.out) if args.out else Path(args.root) / args.dataset
    result = build_dataset(args.dataset, out, force=args.force, progress=not args.quiet, source_dir=args.source_dir)
    version = result.manifest["dataset_version"][:16]
    if result.status == "up-to-date":
        print(f"{out}: already built and verified (version {version}); nothing to do (use --force to rebuild)")
    else:
        print(f"{out}: built {result.manifest['dataset']} (version {version})")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .data.manifest import describe, verify_manifest

    manifest = verify_manifest(args.dataset_dir, checksums=not args.no_verify, progress=sys.stderr.isatty())
    print(describe(manifest))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ackd-bench",
        description="Asymmetric cross-modal knowledge distillation benchmarks (MS teacher -> unpaired RGB student).",
    )
    parser.add_argument("--version", action="version", version=f"ackd-bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build a benchmark dataset (HDF5 shards + manifest)")
    build.add_argument("dataset", help="recipe name, e.g. toy")
    build.add_argument("--out", help="output directory (default: ROOT/DATASET)")
    build.add_argument("--root", default="data", help="parent directory for datasets (default: ./data)")
    build.add_argument("--source-dir", help="directory holding already downloaded source archives or trees")
    build.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=_cmd_build)

    info = commands.add_parser("info", help="verify a built dataset and print its manifest as a table")
    info.add_argument("dataset_dir")
    info.add_argument("--no-verify", action="store_true", help="check shard sizes only, skip sha256")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AckdError as exc:
        print(f"ackd-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ackd-bench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
