"""The `musicmha` console command.

Each subcommand is an argparse parser plus a small `_run_*` function that imports its implementation only
when called, so `musicmha --help` stays fast and light; the subcommands live in three modules by what they
work on (data_commands: files; model_commands: models; music_commands: music). Errors meant for users
(MusicmhaError) are printed as one line with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from musicmha.cli import data_commands, model_commands, music_commands
from musicmha.errors import MusicmhaError

# Subcommands, in the order `musicmha --help` lists them. Later pipelines add theirs here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    data_commands.add_info,
    data_commands.add_corpus,
    data_commands.add_prepare,
    model_commands.add_train,
    model_commands.add_merge_lora,
    model_commands.add_eval,
    model_commands.add_fit_copy_head,
    music_commands.add_generate,
    music_commands.add_infill,
    music_commands.add_add_part,
    music_commands.add_styles,
    data_commands.add_render,
    model_commands.add_app,
]


def build_parser() -> argparse.ArgumentParser:
    from musicmha import __version__

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
