"""A part taken out of a token stream and put back (musicmha/data/part_rows.py), checked against the tokenizer
itself: the others' stream is what it writes for the piece without that part, the part's stream decodes to
the part's notes, and merging them gives back every note of the piece."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import symusic

from musicmha.data.part_rows import merge_part, split_part
from musicmha.data.tokenizer import MusicTokenizer

PROMPTS = sorted((Path(__file__).resolve().parents[2] / "data" / "prompts").glob("*.mid"))


@pytest.fixture(scope="module")
def tokenizer() -> MusicTokenizer:
    return MusicTokenizer.from_config()


def _notes(score: symusic.Score, program: int | None = None) -> Counter:
    """(program or -1 for drums, onset, pitch, duration, velocity) of every note, or of one program's."""
    found = Counter()
    for track in score.tracks:
        key = -1 if track.is_drum else track.program
        if program is None or key == program:
            found.update((key, n.time, n.pitch, n.duration, n.velocity) for n in track.notes)
    return found


def _cases(tokenizer) -> list[tuple[str, list[int], int]]:
    spec = tokenizer.grammar_spec()
    cases = []
    for path in PROMPTS:
        ids = tokenizer.encode(symusic.Score(str(path)))
        programs = sorted({int(spec.tokens[i].split("_")[1]) for i in ids if spec.tokens[i].startswith("Program_")})
        cases += [(path.stem, ids, p) for p in programs]
    return cases


def test_others_are_what_the_tokenizer_writes_without_the_part_and_the_part_is_its_notes(tokenizer):
    spec = tokenizer.grammar_spec()
    cases = _cases(tokenizer)
    assert len(cases) > len(PROMPTS)  # some prompts have several parts (the quartet: three programs)
    for name, ids, program in cases:
        whole = tokenizer.decode(ids)
        others, part = split_part(ids, spec, program)
        assert f"Program_{program}" not in {spec.tokens[t] for t in others}, name
        assert {spec.tokens[t] for t in part if spec.tokens[t].startswith("Program_")} == {f"Program_{program}"}
        without = whole.copy()
        without.tracks = [t for t in whole.tracks if (-1 if t.is_drum else t.program) != program]
        if without.note_num():
            assert others == tokenizer.encode(without), (name, program)
        assert _notes(tokenizer.decode(part)) == _notes(whole, program), (name, program)
        assert _notes(tokenizer.decode(merge_part(others, part, spec))) == _notes(whole), (name, program)


def test_drums_split_and_merge_too(tokenizer):
    """A piece with a kit (built here): the kit's PitchDrum notes go out and come back."""
    spec = tokenizer.grammar_spec()
    score = symusic.Score(str(PROMPTS[0]))
    kit = symusic.Track(name="Drums", program=0, is_drum=True)
    tpq = score.ticks_per_quarter
    for beat in range(8):
        kit.notes.append(symusic.Note(beat * tpq, tpq // 2, 36 if beat % 2 == 0 else 38, 90))
    score.tracks.append(kit)
    ids = tokenizer.encode(score)
    whole = tokenizer.decode(ids)
    others, part = split_part(ids, spec, -1)
    assert any(spec.tokens[t].startswith("PitchDrum_") for t in part)
    assert not any(spec.tokens[t].startswith("PitchDrum_") for t in others)
    assert _notes(tokenizer.decode(part)) == _notes(whole, -1) and len(_notes(whole, -1)) == 8
    assert _notes(tokenizer.decode(merge_part(others, part, spec))) == _notes(whole)


def test_a_program_the_piece_lacks_leaves_the_piece_alone(tokenizer):
    spec = tokenizer.grammar_spec()
    ids = tokenizer.encode(symusic.Score(str(PROMPTS[0])))
    others, part = split_part(ids, spec, 127)
    assert others == ids
    assert all(spec.tokens[t].split("_")[0] in ("Bar", "TimeSig") for t in part)
    assert merge_part(others, part, spec) == ids
