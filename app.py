"""Start the musicmha web app: `python app.py [--port 7860] [--host 127.0.0.1] [--checkpoint FOLDER]`.

Same as `musicmha app`; everything but argument parsing lives in musicmha/app/.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from musicmha.app import add_arguments, launch
    from musicmha.errors import MusicmhaError

    parser = add_arguments(argparse.ArgumentParser(description="musicmha web app (Gradio)"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        launch(args)
    except MusicmhaError as error:
        print(f"app: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
