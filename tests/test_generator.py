"""MusicGenerator: prompts preserved, continuation placement, seeds, lengths, grammar, bad prompts."""

from pathlib import Path

import pytest
import symusic
import torch

from musicmha import MidiError, ModelConfig, MusicTransformer, MusicmhaError
from musicmha.generator import MusicGenerator, token_error_ratio
from musicmha.tokenizer import MusicTokenizer

PROMPTS = sorted((Path(__file__).resolve().parent.parent / "data" / "prompts").glob("*.mid"))


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    tokenizer = MusicTokenizer.from_config()
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=256,
                         dropout=0.0)
    return MusicGenerator(MusicTransformer(config), tokenizer)


def _notes(track):
    return [(n.time, n.duration, n.pitch, n.velocity) for n in track.notes]


@pytest.mark.parametrize("prompt", PROMPTS[:4], ids=lambda p: p.stem)
def test_prompt_is_kept_note_for_note_and_continuation_follows_it(generator, prompt):
    original = symusic.Score(str(prompt))
    (result,) = generator.continue_midi(prompt, max_new_tokens=120, seed=0)
    out = result.score
    assert out.ticks_per_quarter == original.ticks_per_quarter
    kept = [(t.time, t.qpm) for t in original.tempos]
    assert [(t.time, t.qpm) for t in out.tempos][:len(kept)] == kept  # the model's tempo changes come after
    assert all(t.time >= original.end() for t in out.tempos[len(kept):])
    assert [(t.time, t.numerator, t.denominator) for t in out.time_signatures] == \
        [(t.time, t.numerator, t.denominator) for t in original.time_signatures]
    new_notes = sum(len(t.notes) for t in result.continuation.tracks)
    assert new_notes > 0 and out.note_num() == original.note_num() + new_notes
    last_onset = max(n.time for t in original.tracks for n in t.notes)
    for track, kept in zip(original.tracks, out.tracks):  # each prompt track is still there, untouched
        assert (kept.name, kept.program, kept.is_drum) == (track.name, track.program, track.is_drum)
        assert set(_notes(track)) <= set(_notes(kept))
    assert min(n.time for t in result.continuation.tracks for n in t.notes) >= last_onset
    assert result.boundary_tick == original.end()


def test_same_seed_same_midi_other_seed_other_midi(generator):
    runs = [generator.continue_midi(PROMPTS[0], max_new_tokens=80, seed=s)[0] for s in (5, 5, 6)]
    assert runs[0].new_token_ids == runs[1].new_token_ids
    assert runs[0].score.dumps_midi() == runs[1].score.dumps_midi()
    assert runs[0].new_token_ids != runs[2].new_token_ids


def test_constrained_decoding_makes_no_grammar_errors(generator):
    constrained = generator.continue_midi(None, max_new_tokens=150, seed=1, num_samples=12)
    free = generator.continue_midi(None, max_new_tokens=150, seed=1, num_samples=12, constrained=False)
    assert [token_error_ratio(generator.tokenizer, r.token_ids) for r in constrained] == [0.0] * 12
    assert sum(token_error_ratio(generator.tokenizer, r.token_ids) for r in free) / 12 > 0.2
    assert all(r.score.note_num() > 0 for r in constrained)
    assert len({tuple(r.new_token_ids) for r in constrained}) == 12  # the batch rows differ


def test_length_in_bars_and_seconds(generator):
    bar = generator.tokenizer.miditok.vocab["Bar_None"]
    for result in generator.continue_midi(PROMPTS[0], bars=2, seed=2, num_samples=3):
        assert result.new_token_ids.count(bar) <= 3  # the bar in progress, then two more
    (result,) = generator.continue_midi(PROMPTS[0], seconds=4.0, seed=3)
    prompt = symusic.Score(str(PROMPTS[0]))
    start = max(n.time for t in prompt.tracks for n in t.notes)
    last_onset = max(n.time for t in result.continuation.tracks for n in t.notes)
    seconds = (last_onset - start) / prompt.ticks_per_quarter * 60 / prompt.tempos[-1].qpm
    assert seconds <= 4.0 + 1e-6


def test_long_prompts_are_cut_at_a_bar_start(generator):
    tokenizer = generator.tokenizer
    ids = tokenizer.encode(PROMPTS[0])
    (result,) = generator.continue_midi(PROMPTS[0], max_new_tokens=10, seed=0, prompt_tokens=40)
    condition = result.token_ids[:len(result.token_ids) - len(result.new_token_ids)]
    assert condition[0] == tokenizer.bos_id and condition[1] == tokenizer.miditok.vocab["Bar_None"]
    assert len(condition) - 1 <= 40 and condition[1:] == ids[len(ids) - len(condition) + 1:]


def test_bad_prompts_and_arguments(generator, tmp_path):
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02")
    with pytest.raises(MidiError):
        generator.continue_midi(broken)
    with pytest.raises(MidiError):
        generator.continue_midi(b"")
    with pytest.raises(MusicmhaError, match="at most one"):
        generator.continue_midi(None, bars=2, seconds=3)
    with pytest.raises(MusicmhaError, match="must be positive"):
        generator.continue_midi(None, num_samples=0)
    small = MusicTransformer(ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2))
    with pytest.raises(MusicmhaError, match="different checkpoints"):
        MusicGenerator(small, generator.tokenizer)
