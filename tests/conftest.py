import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the reference implementations in tests/reference.py

POSITIONS = ["relative", "rope", "alibi", "none"]

# Under pytest-xdist (pyproject.toml runs the suite with `-n 2`) each worker computes with one torch thread:
# two workers fill the two cores, and a worker never spin-waits for a second thread that a busy core (the
# other worker, a test's subprocess) cannot give it. With two threads and one busy core, a tiny training
# run took 42 s instead of 2.8 s here (docs/benchmarks.md, "The test suite's time").
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


# Under pytest-xdist (`--dist loadgroup`, pyproject.toml) each of these modules runs whole on one worker: its
# module-scoped fixture (a costly build, a served app) is made once instead of once per worker, and its tests
# keep their order (test_app_e2e.py prints the browser timings its earlier tests measured).
ONE_WORKER = {
    "test_shipped_model.py": "converts 384 chorales (about a minute)",
    "test_app_e2e.py": "one served app and its browser tests",
    "test_app_load.py": "the app served in a subprocess",
    "test_finetune.py": "trains the model it fine-tunes",
    "test_arrange.py": "builds and arranges a corpus",
    "test_corpus.py": "builds a corpus",
    "test_dataset.py": "prepares the prompts with transpositions",
    "test_prepare.py": "prepares a mixed folder",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """loadgroup's scheduler with the ONE_WORKER modules as its groups, every other test a unit of its own.
    (pytest-xdist 3.8 names a test's group by appending "@group" to its id, which pytest 9.2 no longer takes,
    so `xdist_group` marks group nothing: pytest-xdist issue 1386.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if Path(module).name in ONE_WORKER else super()._split_scope(nodeid)

    return ModuleGroups(config, log)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The slow tests first (the groups go first anyway, largest first): the run then ends on short tests
        # on both workers, not on one long test while the other worker has nothing left to do.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def tiny_config(position: str = "relative", **overrides):
    from musicmha import ModelConfig

    values = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, max_seq_len=96, position=position,
                  dropout=0.0, max_relative_distance=24)
    values.update(overrides)
    return ModelConfig(**values)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder that tests only read, built once for the whole test run: `build(folder)` fills it. Under
    pytest-xdist the workers share one copy (the first to ask builds it under a file lock, the others wait
    for it) instead of each building its own."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from filelock import FileLock

    folder = tmp_path_factory.getbasetemp().parent / name  # the run's folder, above each worker's own
    with FileLock(f"{folder}.lock"):
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed half-way
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def real_tokens(tmp_path_factory):
    """A token folder prepared from 24 real Bach chorales of music21's corpus, by our own commands."""
    from musicmha.cli import main

    def build(root: Path) -> None:
        assert main(["corpus", "--out", str(root / "corpus"), "--collections", "bach", "--limit", "24",
                     "--workers", "2"]) == 0
        assert main(["prepare", str(root / "corpus"), "--out", str(root / "tokens"), "--workers", "2"]) == 0

    return built_once(tmp_path_factory, "real", build) / "tokens"


@pytest.fixture(scope="session")
def prompt_tokens(tmp_path_factory) -> Path:
    """The bundled prompts (data/prompts) prepared by `musicmha prepare` with the default tokenizer.

    It lives here, not in tests/data/conftest.py: a second conftest.py would take the module name
    `conftest` that test modules import `tiny_config` and `POSITIONS` from.
    """
    from datafiles import copy_prompts

    from musicmha.cli import main

    def build(root: Path) -> None:
        copy_prompts(root / "in")
        assert main(["prepare", str(root / "in"), "--out", str(root / "out"), "--workers", "2"]) == 0

    return built_once(tmp_path_factory, "prompt_tokens", build) / "out"
