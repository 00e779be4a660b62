"""Infill: the notes outside the range come back exactly, the range keeps its length, bad requests are one line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import symusic
from app_helpers import tiny_generator

from musicmha.cli import main
from musicmha.errors import ConfigError, MidiError
from musicmha.data.fim import MAX_FILL_BARS
from musicmha.generation.music_generator import MusicGenerator
from musicmha.evaluation.music_stats import bar_starts

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = sorted((ROOT / "data" / "prompts").glob("*.mid"))


@pytest.fixture(scope="module")
def generator() -> MusicGenerator:
    """Random weights and the default tokenizer (which has the FIM sentinels): exactness is structural."""
    return tiny_generator()


def _notes(score: symusic.Score) -> Counter:
    return Counter((t.program, t.is_drum, n.time, n.duration, n.pitch, n.velocity)
                   for t in score.tracks for n in t.notes)


def _range_ticks(score: symusic.Score, first: int, last: int) -> tuple[int, int]:
    """Bar lines from the score's own time signatures (music_stats, independent of the tokenizer)."""
    lines = bar_starts(score, 0, score.end() + 4 * 4 * score.ticks_per_quarter)
    return lines[first - 1], lines[last]


@pytest.mark.parametrize("prompt, first, last", [(PROMPTS[0], 2, 3), (PROMPTS[1], 3, 4), (PROMPTS[3], 1, 2),
                                                 (PROMPTS[5], 3, 5)])
def test_everything_outside_the_range_comes_back_exactly(generator, prompt, first, last):
    original = symusic.Score(str(prompt))
    start, end = _range_ticks(original, first, last)
    results = generator.infill(prompt, first, last, seed=3, num_samples=3)
    for result in results:
        assert result.span == (start, end)
        got = _notes(result.score)
        outside = Counter({k: v for k, v in _notes(original).items() if not start <= k[2] < end})
        inside = got - outside
        assert not outside - got  # every note that starts outside the range is kept, note for note
        assert all(start <= time < end and time + duration <= end for _, _, time, duration, *_ in inside)
        assert sum(inside.values()) == result.continuation.note_num()
        assert list(result.score.tempos) == list(original.tempos)
        assert list(result.score.time_signatures) == list(original.time_signatures)
        assert [t.program for t in result.score.tracks] == [t.program for t in original.tracks]
        # The model was told how many bars, and wrote at most that many bar lines (the first was forced).
        bar_id = generator.tokenizer.bar_id
        assert result.new_token_ids.count(bar_id) <= last - first
        fim = generator.tokenizer.fim_tokens
        scaffold = result.token_ids[:len(result.token_ids) - len(result.new_token_ids)]
        assert scaffold[0] == fim.suffix and scaffold.index(fim.prefix) < scaffold.index(fim.middle)  # SPM
        assert scaffold[scaffold.index(fim.middle) + 1] == fim.bars_token(last - first + 1)


def test_notes_across_the_boundaries(generator):
    """A note sounding into the range from before it stays; a note starting inside is replaced; new notes
    end by the range's end."""
    tpq = 480
    score = symusic.Score(tpq)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.tempos.append(symusic.Tempo(0, 100.0))
    track = symusic.Track("piano", 0, False)
    bar = 4 * tpq
    track.notes.append(symusic.Note(0, 2 * bar, 60, 80))  # bar 1, sounding through bar 2
    track.notes.append(symusic.Note(bar + tpq, 3 * bar, 64, 80))  # starts in bar 2, lasts into bar 4
    for i in range(16):  # bars 1..4: something on every beat
        track.notes.append(symusic.Note(i * tpq, tpq // 2, 72 + i % 5, 70))
    score.tracks.append(track)
    for result in generator.infill(score, 2, 3, seed=0, num_samples=4):
        notes = _notes(result.score)
        assert notes[(0, False, 0, 2 * bar, 60, 80)] == 1
        assert notes[(0, False, bar + tpq, 3 * bar, 64, 80)] == 0
        assert all(not (bar <= t < 3 * bar) or t + d <= 3 * bar for _, _, t, d, *_ in notes)
        assert sum(v for k, v in notes.items() if k[2] >= 3 * bar) == 4  # bar 4 untouched


def test_new_notes_use_the_prompts_instruments(generator):
    prompt = PROMPTS[1]  # a string quartet: four programs
    programs = {t.program for t in symusic.Score(str(prompt)).tracks}
    for result in generator.infill(prompt, 2, 4, seed=5, num_samples=4):
        assert {t.program for t in result.continuation.tracks} <= programs
        assert not any(t.is_drum for t in result.continuation.tracks)


def test_infill_is_reproducible_by_seed(generator):
    a = generator.infill(PROMPTS[0], 2, 3, seed=11)[0]
    b = generator.infill(PROMPTS[0], 2, 3, seed=11)[0]
    assert a.new_token_ids == b.new_token_ids and _notes(a.score) == _notes(b.score)


def test_bad_ranges_are_one_line_errors(generator):
    cases = [((3, 2), "reversed"), ((0, 2), "outside the piece"), ((2, 400), "outside the piece"),
             ((1, 1 + MAX_FILL_BARS), "at most 16 bars")]
    long_piece = symusic.Score(480)  # 24 bars of quarter notes
    track = symusic.Track("p", 0, False)
    for i in range(96):
        track.notes.append(symusic.Note(i * 480, 480, 60 + i % 12, 80))
    long_piece.tracks.append(track)
    for (first, last), message in cases:
        prompt = long_piece if message == "at most 16 bars" else PROMPTS[0]
        with pytest.raises(ConfigError, match=message) as caught:
            generator.infill(prompt, first, last)
        assert "\n" not in str(caught.value)
    dense = symusic.Score(480)  # 6 bars of four-note chords on every sixteenth: ~270 tokens a bar
    track = symusic.Track("p", 0, False)
    for i in range(6 * 16):
        track.notes.extend(symusic.Note(i * 120, 120, 48 + 7 * k + i % 5, 80) for k in range(4))
    dense.tracks.append(track)
    with pytest.raises(ConfigError, match="more than this model's context"):
        generator.infill(dense, 2, 4)  # about 800 tokens; the model reads 512
    only_inside = symusic.Score(480)
    track = symusic.Track("p", 0, False)
    track.notes.append(symusic.Note(0, 480, 60, 80))
    only_inside.tracks.append(track)
    with pytest.raises(MidiError, match="no music around"):
        generator.infill(only_inside, 1, 1)


def test_a_model_without_sentinels_cannot_infill():
    shipped = MusicGenerator.from_pretrained(ROOT / "checkpoints" / "musicmha-small")
    with pytest.raises(ConfigError, match="without fill-in-the-middle"):
        shipped.infill(PROMPTS[0], 1, 2)


def test_cli(generator, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    generator.model.save_pretrained(folder)
    generator.tokenizer.save(folder)
    out = tmp_path / "new.mid"
    assert main(["infill", "--checkpoint", str(folder), "--prompt", str(PROMPTS[0]), "--bars", "2-3",
                 "--out", str(out), "--seed", "4", "--num-samples", "2", "--png", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "new-1.mid").is_file() and (tmp_path / "new-2.mid").is_file()
    assert (tmp_path / "r-1.png").is_file()
    capsys.readouterr()
    for bars, message in (("3-2", "reversed"), ("2to3", "range of bars like 9-12"), ("1-99", "outside the piece")):
        assert main(["infill", "--checkpoint", str(folder), "--prompt", str(PROMPTS[0]), "--bars", bars,
                     "--out", str(tmp_path / "x.mid")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "x.mid").exists()


def test_the_two_fill_orders_hold_the_same_sides(generator):
    # SPM (the default) and PSM lay out the same prefix and suffix; SPM runs the prefix straight into the middle.
    from musicmha.generation.grammar import TokenGrammar
    from musicmha.generation.infill import plan

    tok = generator.tokenizer
    fim = tok.fim_tokens
    ids = tok.encode(symusic.Score(str(PROMPTS[0])))
    layouts = {order: plan(TokenGrammar(generator.spec), ids, 2, 3, context=512, fim=fim, bos_id=tok.bos_id,
                           eos_id=tok.eos_id, order=order) for order in ("psm", "spm")}
    psm, spm = layouts["psm"].scaffold, layouts["spm"].scaffold
    middle = psm.index(fim.middle)
    prefix, suffix = psm[1:psm.index(fim.suffix)], psm[psm.index(fim.suffix) + 1:middle]
    assert prefix and suffix
    assert spm == [fim.suffix, *suffix, fim.prefix, *prefix, *psm[middle:]]
    assert layouts["spm"].prefix == layouts["psm"].prefix == prefix
    with pytest.raises(ConfigError, match="fill order"):
        plan(TokenGrammar(generator.spec), ids, 2, 3, context=512, fim=fim, bos_id=tok.bos_id, eos_id=tok.eos_id,
             order="mps")


def test_the_copy_head_reads_across_the_sentinels(generator):
    # A piece of six equal bars, bar 4 regenerated greedily with a strong copy head that needs a 4-token match:
    # the sentinels between the prefix and the middle are left out of its search (CopyHead.transparent), so
    # the bar before the range is matched across them and the range comes back as the bars around it.
    from musicmha.generation.copy_head import CopyHead

    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.tempos.append(symusic.Tempo(0, 120.0))
    track = symusic.Track(program=0)
    for bar in range(6):
        for beat, pitch in enumerate((60, 64, 67, 72)):
            track.notes.append(symusic.Note(bar * 1920 + beat * 480, 480, pitch, 80))
    score.tracks.append(track)
    copying = MusicGenerator(generator.model, generator.tokenizer, CopyHead((4,), (0.99,)))
    assert copying.copy_head.transparent == generator.tokenizer.fim_tokens.all_ids
    result = copying.infill(score, 4, 4, temperature=0, seed=0)[0]
    def without_velocity(notes: Counter) -> Counter:  # the tokenizer's velocity bins turn 80 into 79
        return Counter({key[:5]: count for key, count in notes.items()})
    assert without_velocity(_notes(result.score)) == without_velocity(_notes(score))
