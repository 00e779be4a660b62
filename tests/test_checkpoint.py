"""save_pretrained / from_pretrained: bit-exact round trip, clear errors for broken folders."""

import json

import pytest
import torch
from conftest import POSITIONS, tiny_config

from musicmha import CheckpointError, ConfigError, MusicTransformer
from musicmha.atomic_files import atomic_directory


@pytest.mark.parametrize("position", POSITIONS)
def test_round_trip_is_bit_exact(tmp_path, position):
    model = MusicTransformer(tiny_config(position)).eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = MusicTransformer.from_pretrained(tmp_path)
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.lm_head.weight is loaded.token_embedding.weight
    tokens = torch.randint(0, 61, (2, 30))
    assert torch.equal(model(tokens)[0], loaded(tokens)[0])


def test_half_precision_weights_load_back_into_float32(tmp_path):
    model = MusicTransformer(tiny_config()).eval()
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    loaded = MusicTransformer.from_pretrained(tmp_path)
    assert loaded.token_embedding.weight.dtype == torch.float32
    assert torch.equal(loaded.token_embedding.weight, model.token_embedding.weight.float())
    assert MusicTransformer.from_pretrained(tmp_path, dtype=torch.bfloat16).lm_head.weight.dtype == torch.bfloat16


@pytest.fixture
def saved(tmp_path):
    MusicTransformer(tiny_config()).save_pretrained(tmp_path)
    return tmp_path


def _edit_config(folder, **changes):
    path = folder / "config.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("changes, message", [
    (dict(colour="blue"), "unknown field.*colour"),
    (dict(vocab_size=None), "missing required field vocab_size"),
    (dict(n_heads=5), "divisible"),
    (dict(position="sinusoidal"), "position must be one of"),
    (dict(format="other/9"), "unsupported format"),
])
def test_malformed_config_is_refused_naming_the_file(saved, changes, message):
    _edit_config(saved, **changes)
    with pytest.raises(ConfigError, match=message) as info:
        MusicTransformer.from_pretrained(saved)
    assert "config.json" in str(info.value)


def test_config_that_does_not_match_the_weights_is_refused(saved):
    _edit_config(saved, d_model=64)
    with pytest.raises(CheckpointError, match="do not match"):
        MusicTransformer.from_pretrained(saved)


def test_broken_files_are_refused_naming_the_file(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        MusicTransformer.from_pretrained(saved)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        MusicTransformer.from_pretrained(saved)
    with pytest.raises(CheckpointError, match="not found"):
        MusicTransformer.from_pretrained(saved / "missing")


def test_atomic_directory_never_exposes_a_partial_folder(tmp_path):
    target = tmp_path / "export"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "a.txt").write_text("second, half written")
            raise RuntimeError("killed mid-write")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging folder left behind
