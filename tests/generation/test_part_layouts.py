"""add_part in the layouts of a model trained on part rows: LEAD (add_part._interleave with lead: the part
interleaved a bar behind the other parts, after FIM_Middle Program_p) and AFTER (musicmha/generation/
part_after.py: the model reads the other parts of a span of bars whole, then FIM_Middle Program_p, and writes
the part's own stream).

Tiny random models and the bundled prompts. What the model reads is checked against the tokenizer (the span's
tokens of the piece, as it encodes them); what comes back against the prompt (every note kept) and the part's
own stream (the new track is what its tokens decode to); long pieces go in spans that each fit the context;
seeds reproduce; the NLL of a true part in this layout equals a plain forward pass over the row built by hand.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from musicmha import ConfigError, ModelConfig, MusicTransformer
from musicmha.data.midi_io import piece_bar_lines
from musicmha.data.part_rows import split_part
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.evaluation.part_nll import part_after_nll
from musicmha.files import TRAINING_FILE
from musicmha.generation import add_part, part_after
from musicmha.generation.music_generator import MusicGenerator

PROMPTS = {p.stem: p for p in (Path(__file__).resolve().parents[2] / "data" / "prompts").glob("*.mid")}
QUARTET = PROMPTS["beethoven_op18no1_quartet"]  # 373 tokens, four tracks (three programs), 8 bars of 3/4
FOLK = PROMPTS["essen_folksong_han1_1"]


def _generator(context: int, layout: str | None = part_after.AFTER) -> MusicGenerator:
    torch.manual_seed(0)
    tokenizer = MusicTokenizer.from_config()
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=context,
                         dropout=0.0)
    generator = MusicGenerator(MusicTransformer(config), tokenizer)
    generator.trained_part_layout = layout
    return generator


@pytest.fixture(scope="module")
def generator() -> MusicGenerator:
    return _generator(1024)


def _notes(track) -> list[tuple]:
    return [(n.time, n.duration, n.pitch, n.velocity) for n in track.notes]


@pytest.fixture
def openings(monkeypatch) -> list[list[int]]:
    """The rows each span's sampling started from (generate's prompt), recorded."""
    seen: list[list[int]] = []
    real = part_after.generate

    def spy(model, tokens, *args, **kwargs):
        seen.append(tokens[0].tolist())
        return real(model, tokens, *args, **kwargs)

    monkeypatch.setattr(part_after, "generate", spy)
    monkeypatch.setattr(add_part, "generate", spy)
    return seen


@pytest.mark.parametrize("instrument, bars", [("bass", None), ("drums", (3, 5)), ("guitar", (2, 2))])
def test_the_model_reads_the_other_parts_then_writes_the_part_over_their_bars(generator, openings, instrument, bars):
    original = symusic.Score(str(QUARTET))
    tokenizer, spec = generator.tokenizer, generator.spec
    ids = tokenizer.encode(original)
    (result,) = generator.add_part(QUARTET, instrument=instrument, bars=bars, seed=4, layout=part_after.AFTER)
    first, last = bars or (1, len(piece_bar_lines(original)) - 1)
    bar_at = [i for i, t in enumerate(ids) if t == spec.bar_id] + [len(ids)]
    program = -1 if instrument == "drums" else result.score.tracks[-1].program
    # one span (the piece fits): [BOS if it opens the piece] + the piece's tokens of the bars + the sentinels
    (opening,) = openings
    expected = ([tokenizer.bos_id] if first == 1 else []) + ids[bar_at[first - 1]:bar_at[last]]
    assert opening == expected + [tokenizer.fim_tokens.middle, spec.tokens.index(f"Program_{program}")]
    # every note of the prompt comes back, and the new track is the part's own stream decoded, moved to its bar
    assert len(result.score.tracks) == len(original.tracks) + 1
    for before, after in zip(original.tracks, result.score.tracks):
        assert (after.name, after.program, _notes(after)) == (before.name, before.program, _notes(before))
    track = result.score.tracks[-1]
    assert track.name.endswith("(added)") and track.is_drum == (instrument == "drums") and len(track.notes)
    stream = result.new_token_ids
    assert sum(spec.tokens[t].startswith("Bar_") for t in stream) == last - first + 1
    decoded = tokenizer.decode(stream).resample(original.ticks_per_quarter, min_dur=1)
    lines = piece_bar_lines(original)
    shifted = sorted((n.time + lines[first - 1], n.pitch) for t in decoded.tracks for n in t.notes)
    assert sorted((n.time, n.pitch) for n in track.notes) == shifted
    assert all(lines[first - 1] <= n.time and n.end <= lines[last] for n in track.notes)
    assert split_part(stream, spec, program)[0] == [t for t in stream if spec.tokens[t].split("_")[0]
                                                    in ("Bar", "TimeSig")]  # the stream holds the part alone


def test_a_piece_longer_than_the_context_is_written_in_spans_that_fit(openings):
    small = _generator(128)
    original = symusic.Score(str(QUARTET))
    ids = small.tokenizer.encode(original)
    assert len(ids) > 2 * 128
    (result,) = small.add_part(QUARTET, instrument="bass", seed=2, layout=part_after.AFTER)
    budget = int(128 * part_after.OTHERS_SHARE)
    assert len(openings) >= 3
    bar_id = small.spec.bar_id
    read = []
    for opening in openings:
        others = opening[:-2]
        others = others[1:] if others[0] == small.tokenizer.bos_id else others
        assert others[0] == bar_id and (len(others) <= budget or others.count(bar_id) == 1)
        read += others
    assert read == ids  # the spans are the piece's bars, each read once, in order
    lines = piece_bar_lines(original)
    assert max(n.time for n in result.score.tracks[-1].notes) >= lines[-3]  # the last span plays too


def test_seeds_reproduce_and_row_k_is_seed_plus_k_alone():
    small = _generator(128)
    a = small.add_part(QUARTET, instrument="piano", num_samples=2, seed=11, layout=part_after.AFTER)
    b = small.add_part(QUARTET, instrument="piano", num_samples=2, seed=11, layout=part_after.AFTER)
    assert [r.score.dumps_midi() for r in a] == [r.score.dumps_midi() for r in b]
    assert a[0].new_token_ids != a[1].new_token_ids
    (alone,) = small.add_part(QUARTET, instrument="piano", seed=a[1].seed, layout=part_after.AFTER)
    assert alone.new_token_ids == a[1].new_token_ids


def test_the_nll_of_a_true_part_is_a_plain_forward_pass_over_the_row(generator):
    """The cello of the quartet given the other three parts, all 8 bars in one span, against log-softmax of the
    model over the row written out here from the tokenizer's own streams."""
    score = symusic.Score(str(QUARTET))
    cello = max(score.tracks, key=lambda t: -t.notes[0].pitch if len(t.notes) else 0)
    program = cello.program
    prompt, part = score.copy(), score.copy()
    prompt.tracks = [t for t in score.tracks if t.program != program]
    part.tracks = [t for t in score.tracks if t.program == program]
    lines = piece_bar_lines(score)
    got = part_after_nll(generator, prompt, part, program, 1, len(lines) - 1)
    tokenizer, spec = generator.tokenizer, generator.spec
    others, stream = split_part(tokenizer.encode(score), spec, program)
    row = [tokenizer.bos_id, *others, tokenizer.fim_tokens.middle, spec.tokens.index(f"Program_{program}"), *stream]
    with torch.no_grad():
        logp = torch.log_softmax(generator.model(torch.tensor([row]))[0][0].float(), -1)
    start = len(row) - len(stream)
    scored = [i for i in range(start, len(row)) if spec.tokens[row[i]].split("_")[0] not in ("Bar", "TimeSig")]
    expected = np.array([-float(logp[i - 1, row[i]]) for i in scored])
    assert got["tokens"] == len(scored) and got["notes"] == sum(len(t.notes) for t in part.tracks)
    assert got["nll"] == pytest.approx(expected.mean(), rel=1e-4)
    assert got["nats per note"] == pytest.approx(expected.sum() / got["notes"], rel=1e-4)


def test_the_layout_is_read_from_the_checkpoints_training_record(tmp_path):
    assert part_after.layout_of(tmp_path) is None  # no training.json: a hand-made model
    for config, layout in (({"part_rate": 0.0}, None), ({"part_rate": 0.25}, part_after.AFTER),
                           ({"part_rate": 0.25, "part_layout": "lead"}, part_after.LEAD)):
        (tmp_path / TRAINING_FILE).write_text(json.dumps({"train_config": config}))
        assert part_after.layout_of(tmp_path) == layout


def test_a_layout_the_model_was_not_trained_on_is_one_line(generator):
    lead = _generator(128, part_after.LEAD)
    with pytest.raises(ConfigError, match="layout 'after' needs a model trained on after part rows.*writes "
                                          "interleaved, lead$"):
        lead.add_part(FOLK, instrument="bass", layout="after")
    with pytest.raises(ConfigError, match="unknown layout 'beside': choose one of lead, after, interleaved"):
        lead.add_part(FOLK, instrument="bass", layout="beside")
    plain = _generator(128, None)
    with pytest.raises(ConfigError, match="writes interleaved$"):
        plain.add_part(FOLK, instrument="bass", layout="lead")
    assert len(plain.add_part(FOLK, instrument="bass", seed=1)) == 1  # interleaved: any model


def test_spans_cover_the_range_in_whole_bars():
    lines = [(i * 50, 0.0) for i in range(11)]  # 10 bars of 50 tokens each
    assert part_after.spans(lines, 1, 10, 120) == [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]
    assert part_after.spans(lines, 4, 6, 1000) == [(4, 6)]
    assert part_after.spans(lines, 2, 4, 10) == [(2, 2), (3, 3), (4, 4)]  # a bar over the budget: alone


@pytest.mark.parametrize("instrument, bars", [("bass", None), ("drums", (7, 8)), ("piano", (2, 3))])
def test_lead_reads_the_piece_a_bar_ahead_and_moves_the_new_notes_back_a_bar(openings, instrument, bars):
    lead = _generator(1024, part_after.LEAD)
    original = symusic.Score(str(QUARTET))  # 3/4 throughout
    tokenizer, spec = lead.tokenizer, lead.spec
    ids = tokenizer.encode(original)
    (result,) = lead.add_part(QUARTET, instrument=instrument, bars=bars, seed=6, layout=part_after.LEAD)
    lines = piece_bar_lines(original)
    first, last = bars or (1, len(lines) - 1)
    program = -1 if instrument == "drums" else result.score.tracks[-1].program
    bar_at = [i for i, t in enumerate(ids) if t == spec.bar_id] + [len(ids)]
    sentinels = [tokenizer.fim_tokens.middle, spec.tokens.index(f"Program_{program}")]
    # the walk starts where the part's first bar is written: the piece's next bar (or the bar added at its end)
    (opening,) = openings
    assert opening == [tokenizer.bos_id, *sentinels, *ids[:bar_at[first]]]
    for before, after in zip(original.tracks, result.score.tracks):
        assert _notes(after) == _notes(before)
    track = result.score.tracks[-1]
    assert len(track.notes) and all(lines[first - 1] <= n.time and n.end <= lines[last] for n in track.notes)
    # the row's own new notes, decoded where the model wrote them, are the track's notes a bar later
    row = [t for t in result.token_ids[len(sentinels) + 1:] if t != tokenizer.eos_id]
    meter = [t for t in ids if spec.tokens[t].startswith("TimeSig_")][-1]
    written = tokenizer.decode(row).resample(original.ticks_per_quarter, min_dur=1)
    known = {(n.time, n.pitch) for t in original.tracks for n in t.notes}
    new = sorted((n.time, n.pitch) for t in written.tracks for n in t.notes if (n.time, n.pitch) not in known
                 and (t.is_drum if program == -1 else t.program == program and not t.is_drum))
    bar = lines[1] - lines[0]
    assert sorted((n.time + bar, n.pitch) for n in track.notes) == new
    # the row is the piece's tokens, then a bar line and meter added for the part's last bar, with the new
    # tokens slipped in (read as a subsequence); it stops at the bar line after the range
    forced, extended = 0, ids + [spec.bar_id, meter]
    for token in row:
        forced += forced < len(extended) and token == extended[forced]
    assert forced == len(row) - len(result.new_token_ids)
    assert forced == (len(extended) if last == len(lines) - 1 else bar_at[last + 1] + 1)
