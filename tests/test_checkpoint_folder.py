"""musicmha.checkpoint, the owner of the checkpoint folder: list, resolve (a path or a shipped name), the
default, load and an atomic save; a bad name is one line that says what was looked for."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from app_helpers import ROOT, make_tiny_checkpoint

from musicmha import assets, checkpoint
from musicmha.data.tokenizer import MusicTokenizer, TokenizerConfig
from musicmha.errors import CheckpointError
from musicmha.nn.model import MusicTransformer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture
def shipped_root(tmp_path, tiny, monkeypatch):
    """A checkpoints/ folder with two models and one folder that is not a model."""
    root = tmp_path / "checkpoints"
    for name in ("zeta", "alpha"):
        shutil.copytree(tiny, root / name)
    (root / "notes").mkdir()
    monkeypatch.setattr(checkpoint, "CHECKPOINTS_DIR", root)
    monkeypatch.delenv(checkpoint.ENV_VAR, raising=False)
    return root


def test_the_repository_ships_the_default_model_and_prompts():
    assert assets.CHECKPOINTS_DIR == ROOT / "checkpoints"  # a source checkout reads the top-level folders
    assert checkpoint.is_checkpoint(assets.CHECKPOINTS_DIR / checkpoint.DEFAULT_MODEL)
    assert "bach_bwv66.6_chorale" in assets.example_prompts()
    assert all(p.suffix == ".mid" for p in assets.example_prompts().values())


def test_shipped_lists_model_folders_by_name(shipped_root):
    assert [p.name for p in checkpoint.shipped()] == ["alpha", "zeta"]
    assert checkpoint.shipped(shipped_root / "missing") == []


def test_default_is_the_default_model_else_the_first(shipped_root, tiny, monkeypatch):
    assert checkpoint.default() == shipped_root / "alpha"
    shutil.copytree(tiny, shipped_root / checkpoint.DEFAULT_MODEL)
    assert checkpoint.default() == shipped_root / checkpoint.DEFAULT_MODEL
    monkeypatch.setenv(checkpoint.ENV_VAR, "zeta")  # the environment may name a shipped model
    assert checkpoint.default() == shipped_root / "zeta"
    monkeypatch.setenv(checkpoint.ENV_VAR, str(tiny))  # or a folder
    assert checkpoint.default() == tiny


def test_no_shipped_model_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "CHECKPOINTS_DIR", tmp_path / "empty")
    monkeypatch.delenv(checkpoint.ENV_VAR, raising=False)
    with pytest.raises(CheckpointError, match="no checkpoint in .*empty") as info:
        checkpoint.default()
    assert "\n" not in str(info.value)


def test_resolve_takes_a_path_a_shipped_name_or_none(shipped_root, tiny, tmp_path, monkeypatch):
    assert checkpoint.resolve(tiny) == tiny
    assert checkpoint.resolve(str(tiny)) == tiny
    assert checkpoint.resolve("zeta") == shipped_root / "zeta"
    assert checkpoint.resolve(None) == shipped_root / "alpha"
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny, tmp_path / "zeta")  # a folder that exists wins over the shipped name
    assert checkpoint.resolve("zeta").resolve() == (tmp_path / "zeta").resolve()


@pytest.mark.parametrize("name", ["no-such-model", "notes", "missing/zeta", "../checkpoints/zeta"])
def test_a_bad_name_is_one_line_listing_the_shipped_models(shipped_root, tmp_path, monkeypatch, name):
    """Only a bare name is looked up among the shipped models ("notes" is there, but is no model)."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    with pytest.raises(CheckpointError) as info:
        checkpoint.resolve(name)
    message = str(info.value)
    assert "\n" not in message and name in message and "not found" in message and "alpha, zeta" in message


def test_list_checkpoints_shipped_first_then_runs(shipped_root, tiny):
    run_model = shipped_root.parent / "runs" / "mine" / "model"
    shutil.copytree(tiny, run_model)
    found = checkpoint.list_checkpoints()
    assert found == [(shipped_root / "alpha").resolve(), (shipped_root / "zeta").resolve(), run_model.resolve()]
    assert checkpoint.list_checkpoints(extra=tiny)[0] == tiny.resolve()


def test_save_then_load_round_trips_model_tokenizer_and_training(tmp_path, tiny):
    model, tokenizer = checkpoint.load(tiny)
    model.config = dataclasses.replace(model.config, attention_backend="sdpa")  # a run's speed choice
    folder = checkpoint.save(tmp_path / "out", model, tokenizer, training={"steps": 3})
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [checkpoint.CONFIG_FILE, checkpoint.WEIGHTS_FILE, checkpoint.TOKENIZER_FILE, checkpoint.TRAINING_FILE])
    assert json.loads((folder / checkpoint.CONFIG_FILE).read_text())["attention_backend"] == "auto"
    assert checkpoint.read_info(folder, checkpoint.TRAINING_FILE) == {"steps": 3}
    loaded, loaded_tok = checkpoint.load(folder)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert a.equal(b), name
    assert loaded_tok.vocab_size == tokenizer.vocab_size


def test_save_replaces_a_folder_whole_or_not_at_all(tmp_path, tiny, monkeypatch):
    model, tokenizer = checkpoint.load(tiny)
    folder = checkpoint.save(tmp_path / "out", model, tokenizer, training={"steps": 1})

    def disk_full(folder):
        raise OSError(28, "No space left on device")

    weights = (folder / checkpoint.WEIGHTS_FILE).read_bytes()
    changed = MusicTransformer(model.config)
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(1.0)
    monkeypatch.setattr(tokenizer, "save", disk_full)  # fails after the new weights are written
    with pytest.raises(OSError):
        checkpoint.save(folder, changed, tokenizer, training={"steps": 2})
    assert (folder / checkpoint.WEIGHTS_FILE).read_bytes() == weights
    assert checkpoint.read_info(folder, checkpoint.TRAINING_FILE) == {"steps": 1}  # the earlier one, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_load_refuses_a_tokenizer_from_another_model(tmp_path, tiny):
    folder = shutil.copytree(tiny, tmp_path / "mixed")
    MusicTokenizer.from_config(TokenizerConfig(num_velocities=8)).save(folder)
    with pytest.raises(CheckpointError, match="tokenizer does not belong to this model") as info:
        checkpoint.load(folder)
    assert checkpoint.TOKENIZER_FILE in str(info.value) and "\n" not in str(info.value)


def test_read_info_is_none_for_missing_or_broken_files(tmp_path):
    (tmp_path / checkpoint.CONFIG_FILE).write_text("{not json")
    (tmp_path / checkpoint.TRAINING_FILE).write_text("[1, 2]")
    assert checkpoint.read_info(tmp_path, checkpoint.CONFIG_FILE) is None
    assert checkpoint.read_info(tmp_path, checkpoint.TRAINING_FILE) is None
    assert checkpoint.read_info(tmp_path / "missing", checkpoint.TRAINING_FILE) is None


def test_the_checkpoint_still_names_its_files():
    # musicmha.files holds every name; checkpoint.CONFIG_FILE etc. stay for code written against them.
    from musicmha import files

    for name in ("CONFIG_FILE", "WEIGHTS_FILE", "TOKENIZER_FILE", "TRAINING_FILE", "CARD_FILE", "ADAPTER_CONFIG",
                 "ADAPTER_WEIGHTS"):
        assert getattr(checkpoint, name) == getattr(files, name)
