"""The musicmha web app (Gradio). Only this package imports gradio; `build_app` and `launch` are loaded
on first use so `import musicmha.app` stays light."""

from __future__ import annotations

import os
from typing import Any

# Set before any submodule imports gradio, which reads it at import time and would otherwise send
# analytics and check for a newer version online.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's queue recomputes an event summary with pandas after every event, in worker threads, every
# GRADIO_ANALYTICS_CACHE_FREQUENCY events (default 1); pandas 3's option_context is not thread-safe, and two
# events ending together failed a browser test with "dictionary changed size during iteration". The summary
# only feeds gradio's monitoring page, which this app does not use: compute it (practically) never.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))

__all__ = ["add_arguments", "build_app", "launch", "make_config"]


def __getattr__(name: str) -> Any:
    if name == "build_app":
        from musicmha.app.ui import build_app

        return build_app
    if name in ("add_arguments", "launch", "make_config"):
        from musicmha.app import server as module

        return getattr(module, name)
    raise AttributeError(name)
