"""A part taken out of a token stream and put back (musicmha/data/part_rows.py), checked against the tokenizer
itself: the others' stream is what it writes for the piece without that part, the part's stream decodes to
the part's notes, and merging them gives back every note of the piece. Then the training rows made of it
(part_row, and batch_for_step's part_rate), read back by their sentinels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import symusic

from musicmha.data.dataset import TokenSplit, batch_for_step
from musicmha.data.part_rows import AFTER, LEAD, merge_part, part_row, split_part
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.errors import MusicmhaError

PROMPTS = sorted((Path(__file__).resolve().parents[2] / "data" / "prompts").glob("*.mid"))
PROMPTS_BY_NAME = {p.stem: p for p in PROMPTS}


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


def _row_parts(row: list[int], spec, middle: int) -> tuple[list[int], int, list[int]]:
    """(head and others, program, part) of a part row, read from its sentinels: what comes before
    FIM_Middle, the Program token after it, and the stream after that up to its end (EOS, PAD, next piece)."""
    m = row.index(middle)
    program = int(spec.tokens[row[m + 1]].split("_", 1)[1])
    tail = row[m + 2:]
    stop = next((i for i, t in enumerate(tail) if t in (spec.eos_id, spec.pad_id, spec.bos_id)), len(tail))
    return row[:m], program, tail[:stop]


def test_an_after_row_is_the_others_then_the_part_over_the_same_bars(tokenizer):
    """A window of the quartet (three programs) that opens inside a bar, with conditioning tokens: the row
    opens with those tokens, then the others' stream of the window's whole bars, FIM_Middle Program_p and the
    part's stream; the part and the others merge back into the notes of those bars, and the row keeps its
    length."""
    spec = tokenizer.grammar_spec()
    fim = tokenizer.fim_tokens
    cond = tokenizer.condition_tokens
    ids = tokenizer.encode(symusic.Score(str(PROMPTS_BY_NAME["beethoven_op18no1_quartet"])))
    bars = [i for i, t in enumerate(ids) if t == spec.bar_id]
    # five tokens of bar 1, bars 2-3, then room: the rest of the window is whole bars and a part-bar
    start, stop = bars[1] - 5, bars[3] + 160
    window = np.array([cond.styles["classical"], *ids[start:stop]])
    last_bar = max(i for i in range(start, stop) if ids[i] == spec.bar_id)
    whole_bars = ids[bars[1]:last_bar]
    seen, complete = set(), 0
    for seed in range(12):
        row = part_row(window, spec, fim.middle, np.random.default_rng(seed), AFTER)
        assert row is not None and len(row) == len(window)
        head_others, program, part = _row_parts(row.tolist(), spec, fim.middle)
        seen.add(program)
        assert head_others[0] == cond.styles["classical"] and head_others[1] == spec.bar_id
        others, true_part = split_part(whole_bars, spec, program)
        assert head_others[1:] == others and part == true_part[:len(part)]  # a long part loses its end
        padding = len(window) - len(head_others) - 2 - len(part)
        assert row.tolist()[len(window) - padding:] == [spec.pad_id] * padding
        if part == true_part:
            complete += 1
            assert _notes(tokenizer.decode(merge_part(others, part, spec))) == _notes(tokenizer.decode(whole_bars))
    assert complete >= 1
    assert len(seen) >= 2  # the part is drawn among the programs


def test_a_row_that_reaches_the_pieces_end_reads_on_into_the_next_piece(tokenizer):
    spec = tokenizer.grammar_spec()
    fim = tokenizer.fim_tokens
    ids = tokenizer.encode(symusic.Score(str(PROMPTS_BY_NAME["beethoven_op18no1_quartet"])))
    nxt = tokenizer.encode(symusic.Score(str(PROMPTS_BY_NAME["essen_folksong_han1_1"])))
    piece = ids[:[i for i, t in enumerate(ids) if t == spec.bar_id][3]]  # a piece of three bars
    window = np.array([spec.bos_id, *piece, spec.eos_id, spec.bos_id, *nxt])
    row = part_row(window, spec, fim.middle, np.random.default_rng(0), AFTER).tolist()
    head_others, program, part = _row_parts(row, spec, fim.middle)
    assert head_others[0] == spec.bos_id and (head_others[1:], part) == split_part(piece, spec, program)
    after = row[len(head_others) + 2 + len(part):]
    assert len(after) > 20 and after == [spec.eos_id, spec.bos_id, *nxt][:len(after)]


def test_a_lead_row_holds_each_bar_of_the_others_with_the_parts_bar_before(tokenizer):
    """The quartet's bars 2-6 (3/4 throughout) in the LEAD layout, read back by decoding the stream: every note
    of the other parts where it was, every note of the part one bar later; the row opens with the sentinels."""
    spec, fim = tokenizer.grammar_spec(), tokenizer.fim_tokens
    score = symusic.Score(str(PROMPTS_BY_NAME["beethoven_op18no1_quartet"]))
    ids = tokenizer.encode(score)
    bars = [i for i, t in enumerate(ids) if t == spec.bar_id]
    window = ids[bars[1]:bars[5] + 60]  # bars 2-5 whole and room after them: what follows their last bar line
    segment = window[:max(i for i, t in enumerate(window) if t == spec.bar_id)]  # the window's whole bars
    window = np.array(window)
    whole = tokenizer.decode(segment)
    bar = 3 * whole.ticks_per_quarter
    seen, complete = set(), 0
    for seed in range(8):
        row = part_row(window, spec, fim.middle, np.random.default_rng(seed), LEAD).tolist()
        assert row[0] == fim.middle and spec.tokens[row[1]].startswith("Program_") and len(row) == len(window)
        program = int(spec.tokens[row[1]].split("_")[1])
        seen.add(program)
        stream = row[2:]
        stream = stream[:stream.index(spec.pad_id)] if spec.pad_id in stream else stream
        others, part = split_part(segment, spec, program)
        assert stream == merge_part(others, part, spec, lead=1)[:len(stream)]
        if len(stream) == len(merge_part(others, part, spec, lead=1)):
            complete += 1
            got = _notes(tokenizer.decode(stream))
            moved = Counter({(p, t + bar * (p == program), *rest): n for (p, t, *rest), n in _notes(whole).items()})
            assert got == moved
    assert len(seen) >= 2 and complete == 8


def test_one_part_alone_or_no_whole_bar_makes_no_row(tokenizer):
    spec = tokenizer.grammar_spec()
    fim = tokenizer.fim_tokens
    ids = tokenizer.encode(symusic.Score(str(PROMPTS_BY_NAME["bach_bwv66.6_chorale"])))  # one program
    assert part_row(np.array(ids[:300]), spec, fim.middle, np.random.default_rng(0)) is None
    quartet = tokenizer.encode(symusic.Score(str(PROMPTS_BY_NAME["beethoven_op18no1_quartet"])))
    first_bar = quartet.index(spec.bar_id, 1)
    assert part_row(np.array(quartet[1:first_bar]), spec, fim.middle, np.random.default_rng(0)) is None


def test_batches_with_part_rows(prompt_tokens):
    split = TokenSplit(prompt_tokens, "train")
    tok = MusicTokenizer.load(prompt_tokens)
    spec, fim = tok.grammar_spec(), tok.fim_tokens
    kinds = []
    for step in range(4):
        args = {"seq_len": 255, "batch_size": 16, "seed": 3, "step": step, "fim": fim, "fim_rate": 0.5}
        plain = batch_for_step(split, **args)
        assert (batch_for_step(split, **args, part_rate=0.0, part_spec=spec) == plain).all()
        mixed = batch_for_step(split, **args, part_rate=0.6, part_spec=spec)
        assert (batch_for_step(split, **args, part_rate=0.6, part_spec=spec) == mixed).all()  # deterministic
        for row, before in zip(mixed.tolist(), plain.tolist()):
            m = row.index(fim.middle) if fim.middle in row else None
            kind = "plain" if m is None else "part" if spec.tokens[row[m + 1]].startswith("Program_") else "fim"
            kinds.append(kind)
            if kind == "part":
                assert fim.prefix not in row and fim.suffix not in row  # never both a part and a FIM row
            else:
                assert row == before  # every other row is what it would have been without part rows
    assert kinds.count("part") >= 4 and kinds.count("fim") >= 4
    with pytest.raises(MusicmhaError, match="part rows"):
        batch_for_step(split, **args, part_rate=0.5, part_spec=None)
