"""A wheel carries the shipped models and the example prompts: build it, install it into a fresh virtual
environment that cannot see this checkout, and generate from outside the repository (issue 17 item 1).

Offline: the wheel is built with --no-build-isolation by this environment's setuptools, and the fresh
environment borrows this one's dependencies (torch, miditok...) through a .pth file that names their folders.
A folder named that way is only put on sys.path; the .pth files inside it (this checkout's editable-install
finder) are not run, so `import musicmha` can only find the installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from app_helpers import ROOT

pytestmark = pytest.mark.slow

# What a build needs from the checkout (what an sdist holds); nothing else is copied.
BUILD_INPUTS = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "musicmha", "checkpoints", "data/prompts"]

SCRIPT = """
import json, sys
import musicmha
from musicmha import checkpoint
from musicmha.assets import example_prompts
from musicmha.generation.music_generator import MusicGenerator

prompts = example_prompts()
generator = MusicGenerator.from_pretrained(device="cpu")  # the default: the shipped model
by_name = {p.name: MusicGenerator.from_pretrained(p.name, device="cpu").tokenizer.vocab_size  # each by its name
           for p in checkpoint.shipped()}
result = generator.continue_midi(prompts["bach_bwv66.6_chorale"], max_new_tokens=12, seed=0)[0]
print(json.dumps({"package": musicmha.__file__, "prefix": sys.prefix, "prompts": sorted(prompts),
                  "shipped": [p.name for p in checkpoint.shipped()], "default": str(checkpoint.default()),
                  "same_vocab": by_name[checkpoint.default().name] == generator.tokenizer.vocab_size,
                  "new_tokens": len(result.new_token_ids), "notes": result.score.note_num(),
                  "copy_head": generator.copy_head is not None}))
"""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_shipped", ".*"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", str(tmp_path / "dist")])
    (wheel,) = (tmp_path / "dist").glob("musicmha-*.whl")
    return wheel


def _fresh_environment(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # --target only unpacks into the new environment: pip never looks at (or uninstalls) this checkout's install.
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)])
    dependencies = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "_musicmha_test_dependencies.pth").write_text("".join(f"{folder}\n" for folder in dependencies))
    return python


def test_the_wheel_ships_every_model_and_prompt_and_generates(tmp_path):
    wheel = _build_wheel(tmp_path)
    python = _fresh_environment(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"  # no checkpoints/ or data/ here
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MUSICMHA_CHECKPOINT")}
    env["OMP_NUM_THREADS"] = "1"
    found = json.loads(_run([str(python), "-c", SCRIPT], cwd=elsewhere, env=env).stdout.strip().splitlines()[-1])

    venv = (tmp_path / "venv").resolve()
    assert Path(found["package"]).resolve().is_relative_to(venv), found["package"]
    assert Path(found["default"]).resolve().is_relative_to(venv), found["default"]
    # every model folder of checkpoints/ ships, whatever it is called, and every example prompt
    # the default model's copy head travels with it
    assert found["copy_head"] == (ROOT / "checkpoints" / Path(found["default"]).name / "copy_head.json").is_file()
    assert found["shipped"] == sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file())
    assert found["prompts"] == sorted(p.stem for p in (ROOT / "data" / "prompts").glob("*.mid"))
    assert found["same_vocab"] and found["new_tokens"] > 0 and found["notes"] > 0
