"""`python tests/fault_driver.py ARGS...` runs `musicmha ARGS...` with a fault injected from the environment,
so a test can SIGKILL it at a moment it chooses exactly (used only by tests/training/test_train_faults.py).

MUSICMHA_FAULT (unset: no fault):
- ``state-write:N``: the N-th `torch.save` of an optimizer state (inside a checkpoint's staging folder)
  writes half of its bytes, then the process touches MUSICMHA_FAULT_MARKER and waits to be killed;
- ``export:STEP``: the model export of step STEP writes its weights into the staging folder, then touches
  the marker and waits (the state folder of that step is already complete).

Nothing in the library knows about this: the faults are patched in from outside, as a test double would be.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path


def _hang() -> None:
    Path(os.environ["MUSICMHA_FAULT_MARKER"]).touch()
    while True:  # the test sends SIGKILL now
        time.sleep(1)


def _install(fault: str) -> None:
    kind, _, value = fault.partition(":")
    if kind == "state-write":
        import torch

        original, calls = torch.save, [0]

        def save(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and Path(f).name == "optimizer.bin":
                calls[0] += 1
                if calls[0] == int(value):
                    buffer = io.BytesIO()
                    original(obj, buffer, *args, **kwargs)
                    with open(f, "wb") as handle:  # half a file, as a kill mid-write leaves it
                        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                    _hang()
            return original(obj, f, *args, **kwargs)

        torch.save = save
    elif kind == "export":
        from musicmha.nn.model import MusicTransformer

        original_export = MusicTransformer.save_pretrained

        def save_pretrained(self, folder):
            original_export(self, folder)
            training = Path(os.environ["MUSICMHA_FAULT_RUN"]) / "state" / f"step-{int(value):08d}"
            if training.is_dir():  # the export of step STEP: its state folder was renamed into place
                _hang()

        MusicTransformer.save_pretrained = save_pretrained
    else:
        raise SystemExit(f"unknown MUSICMHA_FAULT {fault!r}")


if __name__ == "__main__":
    if os.environ.get("MUSICMHA_FAULT"):
        _install(os.environ["MUSICMHA_FAULT"])
    from musicmha.cli import main

    sys.exit(main(sys.argv[1:]))
