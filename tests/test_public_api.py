"""The names a script imports from `musicmha` itself: pinned, so none disappears quietly, and each one is what
its home module defines (imported lazily: `import musicmha` alone does not import torch)."""

import importlib
import subprocess
import sys

import musicmha

PUBLIC = {
    "MusicGenerator": "musicmha.generation.music_generator.MusicGenerator",
    "GenerationRequest": "musicmha.generation.request.GenerationRequest",
    "SamplingOptions": "musicmha.generation.options.SamplingOptions",
    "GenerationResult": "musicmha.generation.result.GenerationResult",
    "generate": "musicmha.generation.sampling.generate",
    "MusicTransformer": "musicmha.nn.model.MusicTransformer",
    "ModelConfig": "musicmha.nn.config.ModelConfig",
    "MultiHeadAttention": "musicmha.nn.attention.MultiHeadAttention",
    "KVCache": "musicmha.nn.attention.KVCache",
    "MusicTokenizer": "musicmha.data.tokenizer.MusicTokenizer",
    "load_checkpoint": "musicmha.checkpoint.load",
    "CheckpointError": "musicmha.errors.CheckpointError",
    "ConfigError": "musicmha.errors.ConfigError",
    "MidiError": "musicmha.errors.MidiError",
    "MusicmhaError": "musicmha.errors.MusicmhaError",
}


def _home(path: str):
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_the_public_names_are_pinned():
    assert set(musicmha.__all__) == set(PUBLIC) | {"__version__"}


def test_each_public_name_is_its_home_modules_object():
    for name, path in PUBLIC.items():
        assert getattr(musicmha, name) is _home(path), name
        assert name in dir(musicmha)


def test_an_unknown_name_is_an_attribute_error():
    try:
        musicmha.NoSuchThing  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("musicmha.NoSuchThing did not raise")


def test_importing_the_package_does_not_import_torch():
    code = "import sys, musicmha; from musicmha import ConfigError; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_readme_example_runs_through_the_top_level_names(tmp_path):
    from conftest import tiny_config

    from musicmha import GenerationRequest, MusicGenerator, MusicTokenizer, MusicTransformer

    tokenizer = MusicTokenizer.from_config()
    model = MusicTransformer(tiny_config(vocab_size=tokenizer.vocab_size, max_seq_len=128))
    results = MusicGenerator(model, tokenizer).continue_midi(None, GenerationRequest(max_new_tokens=24, num_samples=2))
    assert len(results) == 2 and results[1].seed == results[0].seed + 1
