"""`musicmha generate` end to end on a small checkpoint folder."""

import wave
from pathlib import Path

import pytest
import symusic
import torch

from musicmha import ModelConfig, MusicTransformer
from musicmha.cli import main
from musicmha.data.tokenizer import MusicTokenizer

PROMPT = sorted((Path(__file__).resolve().parents[2] / "data" / "prompts").glob("*.mid"))[0]


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


def _run(checkpoint, tmp_path, *extra):
    return main(["generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o.mid"), "--seed", "2",
                 *extra])


def test_instrument_options(checkpoint, tmp_path):
    assert _run(checkpoint, tmp_path, "--prompt", str(PROMPT), "--bars", "2", "--instruments", "33",
                "--no-drums") == 0
    out, prompt = symusic.Score(str(tmp_path / "o.mid")), symusic.Score(str(PROMPT))
    added = {(t.program, t.is_drum) for t in out.tracks} - {(t.program, t.is_drum) for t in prompt.tracks}
    assert added == {(33, False)}
    assert out.note_num() - prompt.note_num() == len(next(t for t in out.tracks if t.program == 33).notes)
    assert _run(checkpoint, tmp_path, "--prompt", str(PROMPT), "--max-new-tokens", "150",
                "--allow-new-instruments") == 0


def test_opening_options_from_nothing(checkpoint, tmp_path):
    assert _run(checkpoint, tmp_path, "--bars", "2", "--tempo", "100", "--time-signature", "3/4",
                "--instruments", "0,33", "--drums") == 0
    out = symusic.Score(str(tmp_path / "o.mid"))
    # 100 BPM as asked, although the token is the tokenizer's nearest step (100.97)
    assert out.tempos[0].time == 0 and out.tempos[0].mspq == 600_000
    assert [(t.time, t.numerator, t.denominator) for t in out.time_signatures] == [(0, 3, 4)]
    assert {0 if t.is_drum else t.program for t in out.tracks} <= {0, 33}


def test_bars_are_reached_from_the_cli(checkpoint, tmp_path, capsys):
    assert _run(checkpoint, tmp_path, "--prompt", str(PROMPT), "--bars", "3", "--num-samples", "2") == 0
    tokenizer = MusicTokenizer.load(checkpoint)
    bar = tokenizer.bar_id
    prompt_bars = tokenizer.encode(PROMPT).count(bar)
    for i in (1, 2):  # the prompt's last bar is finished, then 3 more
        assert tokenizer.encode(tmp_path / f"o-{i}.mid").count(bar) >= prompt_bars + 3
    assert _run(checkpoint, tmp_path, "--prompt", str(PROMPT), "--bars", "3", "--allow-early-end") == 0


@pytest.mark.parametrize("extra,message", [
    (["--instruments", "0,128"], "0..127"), (["--instruments", "piano"], "0,33"),
    (["--tempo", "0"], "positive"), (["--tempo", "500"], "40..250"), (["--tempo", "-4"], "positive"),
    (["--time-signature", "5/16"], "3/4, 4/4"), (["--time-signature", "three"], "like 3/4"),
    (["--bars", "1000"], "at most 64"), (["--seconds", "9999"], "at most 300"),
    (["--max-new-tokens", "100000"], "at most 8192"),
    (["--prompt", str(PROMPT), "--tempo", "100"], "from nothing"),
    (["--prompt", str(PROMPT), "--instruments", "0", "--allow-new-instruments"], "not both"),
])
def test_bad_controls_exit_2_with_one_line(checkpoint, tmp_path, capsys, extra, message):
    assert _run(checkpoint, tmp_path, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicmha generate: error:") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "o.mid").exists()


def test_copy_boost_sets_the_heads_sampling_boost(checkpoint, tmp_path, capsys):
    # --copy-boost 7 on a head saved at boost 1 writes the very file that a head saved at boost 7 writes.
    import shutil

    from musicmha.generation.copy_head import CopyHead, save_copy_head

    folders = {}
    for boost in (1.0, 7.0):
        folders[boost] = shutil.copytree(checkpoint, tmp_path / f"boost{boost:g}")
        save_copy_head(folders[boost], CopyHead((2, 4), (0.2, 0.5), sampling_boost=boost))  # matches often
    args = ["generate", "--prompt", str(PROMPT), "--max-new-tokens", "80", "--seed", "3"]
    assert main([*args, "--checkpoint", str(folders[1.0]), "--copy-boost", "7", "--out", str(tmp_path / "a.mid")]) == 0
    assert main([*args, "--checkpoint", str(folders[7.0]), "--out", str(tmp_path / "b.mid")]) == 0
    assert main([*args, "--checkpoint", str(folders[1.0]), "--out", str(tmp_path / "c.mid")]) == 0
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
    assert (tmp_path / "a.mid").read_bytes() != (tmp_path / "c.mid").read_bytes()  # the boost changes the draws
    capsys.readouterr()
    for extra, message in ((["--copy-boost", "0"], "sampling_boost must be a positive number"),
                           (["--copy-boost", "2", "--no-copy-head"], "cannot go with --no-copy-head")):
        assert main([*args, "--checkpoint", str(folders[1.0]), *extra, "--out", str(tmp_path / "x.mid")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert main([*args, "--checkpoint", str(checkpoint), "--copy-boost", "2", "--out", str(tmp_path / "x.mid")]) == 2
    assert "has no copy head" in capsys.readouterr().err
    assert not (tmp_path / "x.mid").exists()
