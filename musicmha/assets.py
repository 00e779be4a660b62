"""Where the files shipped with musicmha are: the models of `checkpoints/` and the example prompts of
`data/prompts/`.

In git they live once, at the repository's top level, outside the package. A source checkout or an editable
install (`pip install -e .`) reads them there. A wheel (`pip install .`) installs only the package, so its
build step (setup.py) copies every model folder of checkpoints/ and every data/prompts/*.mid into
`musicmha/_shipped/`; that copy, when it exists, is the one used.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_DIR = PACKAGE_DIR / "_shipped"  # only in an installed wheel; setup.py writes it under this name
SOURCE_ROOT = PACKAGE_DIR.parent  # the repository, in a source checkout or an editable install


def _installed_or_source(installed: Path, source: Path) -> Path:
    return installed if installed.is_dir() else source


CHECKPOINTS_DIR = _installed_or_source(SHIPPED_DIR / "checkpoints", SOURCE_ROOT / "checkpoints")
PROMPTS_DIR = _installed_or_source(SHIPPED_DIR / "prompts", SOURCE_ROOT / "data" / "prompts")


def example_prompts(folder: Path | None = None) -> dict[str, Path]:
    """The bundled example prompts (default: PROMPTS_DIR) by display name (the file stem), sorted."""
    folder = PROMPTS_DIR if folder is None else Path(folder)
    return {p.stem: p for p in sorted(folder.glob("*.mid"))} if folder.is_dir() else {}
