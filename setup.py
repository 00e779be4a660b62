"""The build step that puts the shipped models and example prompts inside the wheel.

They live once in git, at the repository's top level (`checkpoints/NAME/`, `data/prompts/*.mid`), outside
the package, and a wheel installs only the package. So building one copies every model folder of
checkpoints/ (any name: a new model needs no change here) and every prompt into `musicmha/_shipped/`, where
musicmha/assets.py finds them after `pip install .`. An editable install copies nothing: it reads the
top-level folders in place. Everything else is configured in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = Path("musicmha", "_shipped")  # musicmha/assets.py: SHIPPED_DIR


def shipped_files() -> list[tuple[Path, Path]]:
    """(source file, its path inside the built package tree) for every shipped file; hidden files and
    folders (a staging `.NAME.tmp` folder, editor files) and folders without a config.json stay out."""
    checkpoints, prompts = ROOT / "checkpoints", ROOT / "data" / "prompts"
    files = []
    models = sorted(p for p in checkpoints.iterdir() if p.is_dir() and (p / "config.json").is_file()) \
        if checkpoints.is_dir() else []
    for model in models:
        for path in sorted(model.rglob("*")):
            relative = path.relative_to(checkpoints)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                files.append((path, SHIPPED / "checkpoints" / relative))
    files += [(path, SHIPPED / "prompts" / path.name) for path in sorted(prompts.glob("*.mid"))]
    return files


class BuildWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for source, relative in shipped_files():
            target = Path(self.build_lib) / relative
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildWithShippedFiles})
