"""The pitch-range control (issue 28, item 3): parsed from numbers and note names, refused in one line, and kept
by every new pitched note of continue_midi, infill and add_part, never by the drums."""

from __future__ import annotations

from pathlib import Path

import pytest
import symusic
from app_helpers import make_tiny_checkpoint, tiny_generator

from musicmha import ConfigError, GenerationRequest
from musicmha.cli import main
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.music_generator import MusicGenerator
from musicmha.generation.pitch_range import parse_pitch, parse_pitch_range, pitch_name

PROMPTS = Path(__file__).resolve().parents[2] / "data" / "prompts"
QUARTET = PROMPTS / "beethoven_op18no1_quartet.mid"  # four tracks, 3/4
TUNE = PROMPTS / "oneills_tune_1.mid"


@pytest.fixture(scope="module")
def generator() -> MusicGenerator:
    return tiny_generator()


@pytest.mark.parametrize("text, pitch", [("C4", 60), ("A0", 21), ("C-1", 0), ("Bb2", 46), ("F#3", 54),
                                         ("g9", 127), ("60", 60), (72, 72), (48.0, 48)])
def test_note_names_and_numbers(text, pitch):
    assert parse_pitch(text) == pitch
    assert parse_pitch(pitch_name(pitch)) == pitch  # the names messages print read back


@pytest.mark.parametrize("bad", ["H2", "G#9", 128, -1, True, "C", 60.5, "do"])
def test_bad_pitches_are_one_line(bad):
    with pytest.raises(ConfigError) as error:
        parse_pitch(bad)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value, expected", [("C3-C6", (48, 84)), ("48-84", (48, 84)), (("C3", "C6"), (48, 84)),
                                             ([40, 40], (40, 40)), ("C-1-C3", (0, 48)), ("C3 to C6", (48, 84)),
                                             ("C3..C6", (48, 84)), (None, None), ("", None)])
def test_ranges(value, expected):
    assert parse_pitch_range(value) == expected
    assert GenerationRequest(pitch_range=value).pitch_range == expected


@pytest.mark.parametrize("bad, words", [("C6-C3", "reversed"), ("C3", "C3-C6"), ((1, 2, 3), "C3-C6"),
                                        (5, "C3-C6"), ("C3-Z9", "note name")])
def test_bad_ranges_are_one_line(bad, words):
    with pytest.raises(ConfigError) as error:
        GenerationRequest(pitch_range=bad)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_grammar_bans_exactly_the_pitched_notes_outside(generator):
    spec = generator.spec
    grammar = TokenGrammar(spec, pitch_range=(50, 70))
    for i, name in enumerate(spec.tokens):  # an independent reading of the token names
        kind, _, value = name.partition("_")
        outside = kind in ("Pitch", "NoteOn") and not 50 <= int(value) <= 70
        assert bool(grammar.banned[i]) == outside, name
    assert any(t.startswith("PitchDrum_") for t in spec.tokens)  # drums exist, and none is banned


def _new_pitched(result) -> list[int]:
    return [n.pitch for t in result.continuation.tracks if not t.is_drum for n in t.notes]


def test_continuations_keep_the_range_and_without_it_they_do_not(generator):
    free = generator.continue_midi(QUARTET, bars=2, num_samples=2, seed=1)
    assert any(not 60 <= p <= 67 for r in free for p in _new_pitched(r))  # the test can fail
    kept = generator.continue_midi(QUARTET, bars=2, num_samples=2, seed=1, pitch_range="C4-G4")
    pitches = [p for r in kept for p in _new_pitched(r)]
    assert pitches and all(60 <= p <= 67 for p in pitches)


def test_infill_keeps_the_range(generator):
    results = generator.infill(TUNE, 2, 3, num_samples=2, seed=2, pitch_range=(62, 74))
    pitches = [p for r in results for p in _new_pitched(r)]
    assert pitches and all(62 <= p <= 74 for p in pitches)


def test_an_added_part_takes_the_asked_range_and_drums_ignore_it(generator):
    (bass,) = generator.add_part(TUNE, instrument="bass", bars=(1, 2), seed=0, pitch_range="E2-A2")
    assert bass.score.tracks[-1].notes and all(40 <= n.pitch <= 45 for n in bass.score.tracks[-1].notes)
    (drums,) = generator.add_part(TUNE, instrument="drums", bars=(1, 2), seed=0, pitch_range="E2-A2")
    assert drums.score.tracks[-1].is_drum and len(drums.score.tracks[-1].notes) > 0


def test_a_range_the_tokenizer_cannot_write_is_refused_with_its_range(generator):
    low, high = generator.tokenizer.pitch_range
    with pytest.raises(ConfigError, match=f"it writes {pitch_name(low)}-{pitch_name(high - 1)}"):
        generator.continue_midi(QUARTET, bars=1, pitch_range=(0, low - 1))


def test_cli_takes_pitch_range(tmp_path, capsys):
    folder = make_tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out.mid"
    assert main(["generate", "--checkpoint", str(folder), "--prompt", str(TUNE), "--bars", "2", "--seed", "0",
                 "--pitch-range", "C4-C5", "--out", str(out)]) == 0
    score, prompt = symusic.Score(str(out)), symusic.Score(str(TUNE))
    new = [n.pitch for t in score.tracks for n in t.notes if n.time >= prompt.end()]
    assert new and all(60 <= p <= 72 for p in new)
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(folder), "--prompt", str(TUNE), "--pitch-range", "C5-C4",
                 "--out", str(tmp_path / "x.mid")]) == 2
    err = capsys.readouterr().err
    assert "reversed" in err and err.count("\n") == 1
