"""Starting the app: the command-line options shared by `python app.py` and `musicmha app`, and `launch`.

Offline by construction: analytics (and Gradio's version check) off, a built-in theme (bundled fonts), no
share link, and no server-side rendering (it would start a Node process).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from musicmha.data.midi_io import MAX_BYTES

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoint", default=None,
                        help="model folder (default: $MUSICMHA_CHECKPOINT, else the first of checkpoints/)")
    parser.add_argument("--checkpoint-dir", action="append", default=None, metavar="DIR",
                        help="also list the models found in DIR (DIR, DIR/*, DIR/*/model), e.g. your fine-tunes; "
                             "runs/ is always searched")
    parser.add_argument("--host", default=None, help=f"address to listen on (default: {DEFAULT_HOST}; "
                        "0.0.0.0 to serve other machines)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default: $GRADIO_SERVER_PORT, else {DEFAULT_PORT})")
    parser.add_argument("--max-upload-mb", type=float, default=MAX_BYTES / 1e6,
                        help="largest MIDI upload accepted, in MB (default: %(default)g)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="generations run at the same time (default: 1; the model uses every core)")
    parser.add_argument("--queue-size", type=int, default=16,
                        help="requests waiting beyond this get a 'busy' message (default: %(default)s)")
    parser.add_argument("--time-limit", type=float, default=300.0,
                        help="seconds one generation may take before it is stopped (default: %(default)g)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    return parser


def make_config(args: argparse.Namespace):
    from musicmha.app.handlers import AppConfig
    from musicmha.app.service import ModelCache, initial_checkpoint, list_examples
    from musicmha.checkpoint import list_checkpoints

    checkpoint = initial_checkpoint(args.checkpoint)
    if checkpoint is None:
        logger.warning("no checkpoint found: the app starts, but generating needs one (--checkpoint)")
    search = [Path(d) for d in (getattr(args, "checkpoint_dir", None) or [])]
    return AppConfig(checkpoints=list_checkpoints(extra=checkpoint, search=search), checkpoint=checkpoint,
                     examples=list_examples(), max_upload_bytes=int(args.max_upload_mb * 1e6),
                     time_limit=args.time_limit, cache=ModelCache(device=args.device))


def prepare(args: argparse.Namespace):
    """The queued Blocks app and the keyword arguments of its launch()."""
    import gradio as gr

    from musicmha.app.ui import build_app
    from musicmha.app.page_script import CSS, PLAYHEAD_JS

    config = make_config(args)
    app = build_app(config).queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)
    upload_limit = 2 * config.max_upload_bytes  # gradio's hard stop; our own limit gives the clearer message
    kwargs = dict(server_name=args.host or DEFAULT_HOST, server_port=port, share=False, ssr_mode=False,
                  theme=gr.themes.Default(), css=CSS, head=PLAYHEAD_JS, max_file_size=upload_limit,
                  allowed_paths=[str(config.files.root)], show_error=False, footer_links=["api", "settings"])
    return app, kwargs


def _stop_on_sigterm() -> None:
    """SIGTERM (kill, systemd, docker stop) ends Python without running atexit handlers, which left the
    app's temporary folder behind; treat it like Ctrl+C, which Gradio turns into a clean shutdown."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def launch(args: argparse.Namespace, **overrides) -> None:
    """Start the server and block until it is stopped (Ctrl+C or SIGTERM)."""
    app, kwargs = prepare(args)
    kwargs.update(overrides)
    _stop_on_sigterm()
    logger.info("starting the app on http://%s:%s", kwargs["server_name"], kwargs["server_port"])
    app.launch(**kwargs)
