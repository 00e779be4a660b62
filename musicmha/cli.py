"""The `musicmha` console command.

Each subcommand is an argparse parser plus a small `_run_*` function that imports its implementation only
when called, so `musicmha --help` stays fast and light. Errors meant for users (MusicmhaError) are printed
as one line with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .errors import MusicmhaError

Runner = Callable[[argparse.Namespace], int | None]


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint folder: configuration and parameter count")
    p.add_argument("checkpoint", help="folder with config.json and model.safetensors")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    import json

    from .model import MusicTransformer

    model = MusicTransformer.from_pretrained(args.checkpoint)
    print(json.dumps(model.config.to_dict(), indent=2))
    print(f"parameters: {model.num_parameters():,}")
    return 0


# Subcommands, in the order `musicmha --help` lists them. Later pipelines add theirs here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_info,
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="musicmha",
        description="Symbolic music generation with a causal multi-head attention transformer.",
    )
    parser.add_argument("--version", action="version", version=f"musicmha {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except MusicmhaError as error:
        print(f"musicmha {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"musicmha {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
