"""The musicmha web app (Gradio). Only this package imports gradio; `build_app` and `launch` are loaded
on first use so `import musicmha.app` stays light."""

from __future__ import annotations

import os
from typing import Any

# Set before any submodule imports gradio, which reads it at import time and would otherwise send
# analytics and check for a newer version online.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

__all__ = ["add_arguments", "build_app", "launch", "make_config"]


def __getattr__(name: str) -> Any:
    if name == "build_app":
        from musicmha.app.ui import build_app

        return build_app
    if name in ("add_arguments", "launch", "make_config"):
        from musicmha.app import server as module

        return getattr(module, name)
    raise AttributeError(name)
