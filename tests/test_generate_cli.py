"""`musicmha generate` end to end on a small checkpoint folder."""

import wave
from pathlib import Path

import pytest
import torch

from musicmha import ModelConfig, MusicTransformer
from musicmha.cli import main
from musicmha.tokenizer import MusicTokenizer

PROMPT = sorted((Path(__file__).resolve().parent.parent / "data" / "prompts").glob("*.mid"))[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    tokenizer = MusicTokenizer.from_config()
    torch.manual_seed(0)
    MusicTransformer(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=1, n_heads=2,
                                 max_seq_len=256)).save_pretrained(folder)
    tokenizer.save(folder)
    return folder


def test_same_seed_gives_byte_identical_files(checkpoint, tmp_path, capsys):
    args = ["generate", "--checkpoint", str(checkpoint), "--prompt", str(PROMPT), "--max-new-tokens", "60",
            "--seed", "11", "--num-samples", "2"]
    assert main([*args, "--out", str(tmp_path / "a.mid")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.mid")]) == 0
    for i in (1, 2):
        a, b = (tmp_path / f"a-{i}.mid").read_bytes(), (tmp_path / f"b-{i}.mid").read_bytes()
        assert a == b and a.startswith(b"MThd")
    assert (tmp_path / "a-1.mid").read_bytes() != (tmp_path / "a-2.mid").read_bytes()
    assert "seed 11" in capsys.readouterr().out


def test_audio_and_piano_roll_outputs(checkpoint, tmp_path):
    assert main(["generate", "--checkpoint", str(checkpoint), "--prompt", str(PROMPT), "--bars", "1",
                 "--seed", "1", "--out", str(tmp_path / "x.mid"), "--wav", str(tmp_path / "x.wav"),
                 "--png", str(tmp_path / "x.png")]) == 0
    with wave.open(str(tmp_path / "x.wav")) as audio:
        assert audio.getnframes() > audio.getframerate()  # the prompt alone lasts seconds
    assert (tmp_path / "x.png").read_bytes().startswith(b"\x89PNG")


def test_corrupt_prompt_is_a_one_line_error(checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file at all")
    assert main(["generate", "--checkpoint", str(checkpoint), "--prompt", str(bad),
                 "--out", str(tmp_path / "o.mid")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicmha generate: error:") and err.count("\n") == 1
    assert not (tmp_path / "o.mid").exists()
