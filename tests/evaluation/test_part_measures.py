"""The add-part benchmark's measures (musicmha/evaluation/part_measures.py) on hand-built notes whose answers
are known: chords heard in the other parts, chord tones and roots of a bass, drum onset F1 (micro-averaged
bar by bar: the cases fail for a macro average or for positions pooled across bars), groove consistency and
density; the retrieval baseline's copy (benchmarks/part_retrieval.py); and the NLL stream of
musicmha/evaluation/part_nll.py, which must hold the piece and the true part exactly, on a tiny model."""

import math
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from musicmha import ModelConfig, MusicTransformer
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.evaluation import part_measures as pm
from musicmha.evaluation.part_nll import interleave_part, part_nll
from musicmha.generation.music_generator import MusicGenerator

ROOT = Path(__file__).resolve().parents[2]
TPQ = 480
BAR = 4 * TPQ  # 4/4
LINES = [0, BAR, 2 * BAR]  # two bars


def note(time: int, pitch: int, duration: int = TPQ) -> symusic.Note:
    return symusic.Note(time, duration, pitch, 80)


def triads() -> list[symusic.Note]:
    """C major (C4 E4 G4) held through bar 1, F major (F4 A4 C5) through bar 2."""
    return [note(0, p, BAR) for p in (60, 64, 67)] + [note(BAR, p, BAR) for p in (65, 69, 72)]


def test_chords_are_heard_in_the_other_parts_bar_by_bar():
    assert pm.bar_chords(triads(), LINES) == ["C", "F"]
    assert pm.bar_chords(triads()[:3], LINES) == ["C", None]  # nothing sounds in bar 2
    assert pm.parse_chord("F#m") == (6, {6, 9, 1}) and pm.parse_chord("Bb7") == (10, {10, 2, 5, 8})


def test_chord_tone_and_root_shares_of_a_hand_built_bass():
    chords = pm.bar_chords(triads(), LINES)
    bass = [note(0, 36), note(TPQ, 40), note(2 * TPQ, 38), note(3 * TPQ, 43),  # C E D G: D is no tone of C
            note(BAR, 45), note(BAR + TPQ, 41)]  # A F over F: chord tones, but the lowest (F2 41) is the root
    assert pm.chord_tone_share(bass, chords, LINES) == pytest.approx(5 / 6)
    assert pm.root_share(bass, chords, LINES) == 1.0
    low_third = bass[:4] + [note(BAR, 33), note(BAR + TPQ, 41)]  # A1 under F2: bar 2's lowest is the third
    assert pm.root_share(low_third, chords, LINES) == 0.5
    assert pm.chord_tone_share(bass, [None, "F"], LINES) == 1.0  # a bar without a chord does not count
    assert math.isnan(pm.root_share([], chords, LINES))
    assert math.isnan(pm.chord_tone_share([note(2 * BAR, 36)], chords, LINES))  # past the bars


def test_onset_f1_is_micro_averaged_bar_by_bar_on_the_sixteenth_grid():
    truth = [note(q * TPQ, 36) for q in range(4)] + [note(BAR, 38)]  # four onsets in bar 1, one in bar 2
    same_bar_one = [note(q * TPQ + 10, 36) for q in range(4)] + [note(0, 42)]  # 10 ticks off; two notes at 0
    # tp 4, fp 0, fn 1: micro F1 = 8/9 (a mean of per-bar F1s would give (1 + 0) / 2 = 0.5)
    assert pm.onset_f1(same_bar_one, truth, LINES, TPQ) == pytest.approx(8 / 9)
    # bar 1's downbeat is not bar 2's: positions are compared within their own bar (pooled they would match)
    assert pm.onset_f1([note(0, 36)], [note(BAR, 36)], LINES, TPQ) == 0.0
    # a sixteenth is a sixteenth: an onset one sixteenth late misses
    assert pm.onset_f1([note(TPQ // 4, 36)], [note(0, 36)], LINES, TPQ) == 0.0
    assert pm.onset_f1(truth, truth, LINES, TPQ) == 1.0
    assert math.isnan(pm.onset_f1([], [], LINES, TPQ))
    assert pm.onset_f1([], truth, LINES, TPQ) == 0.0
    assert pm.onset_f1([note(2 * BAR, 36)], truth, LINES, TPQ) == 0.0  # past the bars: not counted, so no hit


def test_groove_consistency_compares_successive_bars():
    lines = [0, BAR, 2 * BAR, 3 * BAR, 4 * BAR]
    on_beats = [note(b * BAR + q * TPQ, 36) for b in range(4) for q in range(4)]
    assert pm.groove_consistency(on_beats, lines, TPQ) == pytest.approx(1.0)
    offbeats = [note(b * BAR + q * TPQ + TPQ // 2, 36) for b in (2, 3) for q in range(4)]
    mixed = [n for n in on_beats if n.time < 2 * BAR] + offbeats  # A A B B: pairs 1, 0, 1
    assert pm.groove_consistency(mixed, lines, TPQ) == pytest.approx(2 / 3)
    gap = [n for n in on_beats if not BAR <= n.time < 3 * BAR]  # A - - A: pairs 0, (skipped), 0
    assert pm.groove_consistency(gap, lines, TPQ) == 0.0
    assert math.isnan(pm.groove_consistency([], lines, TPQ))
    hist = pm.bar_histograms([note(0, 36), note(0, 38), note(3 * TPQ, 42)], LINES, TPQ)
    assert hist[0].tolist() == [2.0] + [0.0] * 11 + [1.0] + [0.0] * 3 and not hist[1].any()


def test_density_and_part_stats():
    truth = [note(q * TPQ, 36) for q in range(8)]
    assert pm.density_ratio(truth[:4], truth, LINES) == 0.5
    assert math.isnan(pm.density_ratio(truth, [], LINES))
    stats = pm.part_stats(truth[:4], [note(0, 60), note(TPQ // 2, 60)], LINES, TPQ)
    assert stats == {"notes per bar": 2.0, "lowest pitch": 36, "highest pitch": 36,
                     "onsets on the other parts' onsets": 0.25, "bars with a note": 0.5}


def test_retrieval_copies_bar_by_bar_scaled_and_transposed(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from part_retrieval import Candidate, copy_part

    candidate = Candidate("x.mid", np.zeros(16), [[note(0, 38, 960)], [note(480, 45, 960)]], 960, anchor=2)
    copied = copy_part(candidate, [100, 100 + BAR, 100 + 2 * BAR], TPQ, root=0)  # D -> C: down 2 semitones
    assert [(n.time, n.duration, n.pitch) for n in copied] == [(100, 480, 36), (100 + BAR + 240, 480, 43)]
    assert [n.pitch for n in copy_part(candidate, LINES, TPQ, root=9)] == [33, 40]  # D -> A: up 7 is down 5
    candidate.anchor = None  # drums: as they are
    assert [n.pitch for n in copy_part(candidate, LINES, TPQ, root=9)] == [38, 45]


@pytest.fixture(scope="module")
def generator():
    tokenizer = MusicTokenizer.from_config()
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=64,
                         dropout=0.0)
    return MusicGenerator(MusicTransformer(config), tokenizer)


def band() -> tuple[symusic.Score, symusic.Score, symusic.Score]:
    """(piece, its other parts, its bass): a melody, chords on the beats, drums, and a bass partly off the
    others' onsets, four bars of 4/4."""
    def track(name, program, notes, drum=False):
        t = symusic.Track(name, program=program, is_drum=drum)
        t.notes.extend(notes)
        return t
    melody = track("Melody", 73, [note(q * TPQ, 72 + q % 5) for q in range(16)])
    chords = track("Chord", 0, [note(b * BAR + h * 2 * TPQ, p, 2 * TPQ) for b in range(4) for h in range(2)
                                for p in (60, 64, 67)])
    drums = track("Drum", 0, [note(e * TPQ // 2, (36, 42)[e % 2], 60) for e in range(32)], drum=True)
    bass = track("Bass", 33, [note(b * BAR + off, 36 + b, 240) for b in range(4) for off in (0, 720, 1320)])
    scores = []
    for tracks in ((melody, chords, drums, bass), (melody, chords, drums), (bass,)):
        s = symusic.Score(TPQ)
        s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        s.tracks.extend(t.copy() for t in tracks)
        scores.append(s)
    return tuple(scores)


def test_the_nll_stream_holds_the_piece_and_the_true_part_in_add_parts_order(generator):
    tok = generator.tokenizer
    piece, others, bass = band()
    ids = tok.encode(others)
    stream = interleave_part(generator.spec, ids, tok.encode(bass), 33, 1, 3, [tok.bos_id], tok.pitch_range)
    body = [t for t in stream.tokens[1:] if t != tok.eos_id]
    full = tok.decode(tok.encode(piece))
    end = 3 * BAR * full.ticks_per_quarter // TPQ

    def notes(score, until):
        return sorted((t.is_drum, t.program, n.time, n.pitch, n.duration) for t in score.tracks for n in t.notes
                      if n.time < until)
    assert notes(tok.decode(body), end) == notes(full, end)  # bars 1-3 exactly, bar 4 not read
    assert stream.notes == 9
    kinds = [generator.spec.tokens[stream.tokens[i]].split("_")[0] for i in stream.targets]
    assert kinds.count("Program") == 9 and kinds.count("Position") == 3  # 1320 is none of the others' onsets
    assert stream.refused == 0
    # the part's notes come after the other parts' notes at their onset
    first = stream.targets[0]
    assert generator.spec.tokens[stream.tokens[first - 1]].startswith("Duration")
    result = part_nll(generator, others, bass, 33, 1, 3)  # longer than the 64-token context: windows
    assert len(stream.tokens) > 64 and result["tokens"] == len(stream.targets)
    assert 0 < result["nll"] < 20 and result["notes"] == 9


@pytest.mark.parametrize("lead", [False, True])
def test_the_cost_per_note_given_the_past_is_the_whole_streams_nll_less_the_others(generator, lead):
    """On a model whose context holds the whole stream: one forward pass over the interleaved stream and one
    over the others' stream alone (the stream without the part's tokens), both by hand. In the LEAD layout the
    stream opens with the sentinels and holds the bass a bar late (read back by decoding it)."""
    tok = generator.tokenizer
    wide = MusicGenerator(MusicTransformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2,
                                                       n_heads=4, max_seq_len=1024, dropout=0.0)), tok)
    piece, others, bass = band()
    opening = [tok.bos_id] + ([tok.fim_tokens.middle, wide.spec.tokens.index("Program_33")] if lead else [])
    stream = interleave_part(wide.spec, tok.encode(others), tok.encode(bass), 33, 1, 3, opening,
                             tok.pitch_range, lead=int(lead))
    if lead:
        body = tok.decode([t for t in stream.tokens[len(opening):] if t != tok.eos_id])
        full = tok.decode(tok.encode(piece))
        bar = 4 * full.ticks_per_quarter
        late = sorted((n.time + bar, n.pitch) for t in full.tracks if t.program == 33 for n in t.notes
                      if n.time < 3 * bar)
        assert sorted((n.time, n.pitch) for t in body.tracks if t.program == 33 for n in t.notes) == late

    def total(tokens: list[int]) -> float:
        with torch.no_grad():
            logp = torch.log_softmax(wide.model(torch.tensor([tokens]))[0][0].float(), -1)
        return -sum(float(logp[i - 1, tokens[i]]) for i in range(1, len(tokens)))

    targets = set(stream.targets)
    without = [t for i, t in enumerate(stream.tokens) if i not in targets]
    result = part_nll(wide, others, bass, 33, 1, 3, lead=lead)
    expected = (total(stream.tokens) - total(without)) / 9
    assert result["nats per note"] == pytest.approx(expected, rel=1e-4, abs=1e-4)
