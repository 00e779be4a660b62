"""style_features against hand-built scores, nearest_style on made-up centroids, and a smoke run of
benchmarks/style_control.py's three measurements with a tiny random model."""

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from musicmha.evaluation import style_features as sf

Q = 480  # ticks per quarter
BAR = 4 * Q
ROOT = Path(__file__).resolve().parents[2]
PART = sf.block_slices()


def _score(notes=(), *, drums=(), meter=(4, 4)) -> symusic.Score:
    """A score of (time, duration, pitch) notes on a piano track and drum hits on a kit, through MIDI."""
    score = symusic.Score(Q)
    for is_drum, events in ((False, notes), (True, drums)):
        if events:
            track = symusic.Track(name="kit" if is_drum else "piano", program=0, is_drum=is_drum)
            for time, duration, pitch in events:
                track.notes.append(symusic.Note(time, duration, pitch, 80))
            score.tracks.append(track)
    score.time_signatures.append(symusic.TimeSignature(0, *meter))
    return symusic.Score.from_midi(score.dumps_midi())


def _quarters(bars: int, per_bar: int = 4, pitch: int = 60) -> list[tuple[int, int, int]]:
    step = BAR // per_bar
    return [(k * step, step, pitch + (k % 3)) for k in range(bars * per_bar)]


def test_a_drum_only_bar_is_all_drums():
    score = _score(drums=[(k * Q // 2, Q // 2, 42) for k in range(8)])
    assert sf.drum_share(score) == 1.0
    vector = sf.passage_features(score)
    assert vector[PART["drums"]] == [1.0]
    assert not vector[PART["pitch_classes"]].any() and not vector[PART["intervals"]].any()
    assert vector[PART["polyphony"]] == [0.0]
    assert sf.drum_share(_score(_quarters(1), drums=[(0, Q, 36), (2 * Q, Q, 38)])) == pytest.approx(2 / 6)


def test_four_quarter_notes_put_the_onsets_on_the_beats():
    bar_position, beat_phase = sf.onset_histograms(_score(_quarters(2)))
    expected = np.zeros(sf.BAR_BINS)
    expected[[0, 4, 8, 12]] = 0.25
    np.testing.assert_allclose(bar_position, expected)
    assert beat_phase[0] == 1.0
    # in 3/4 the three beats fall at thirds of the bar
    waltz, _ = sf.onset_histograms(_score([(k * Q, Q, 60) for k in range(6)], meter=(3, 4)))
    assert set(np.flatnonzero(waltz)) == {0, 5, 10}
    # straight eighths off the beat at 4/8 of a quarter, swung (triplet) ones at 5/8
    for offbeat, phase_bin in ((Q // 2, 4), (2 * Q // 3, 5)):
        _, phase = sf.onset_histograms(_score([(t, Q // 4, 60) for b in range(4) for t in (b * Q, b * Q + offbeat)]))
        assert phase[0] == phase[phase_bin] == 0.5


def test_a_chord_is_one_onset_and_its_notes_count_as_polyphony():
    chords = [(k * Q, Q, p) for k in range(4) for p in (60, 64, 67, 72)]
    score = _score(chords)
    assert sf.notes_per_onset(score) == 4.0
    bar_position, _ = sf.onset_histograms(score)
    assert bar_position[0] == 0.25  # four onsets, not sixteen notes
    assert sf.interval_histogram(score)[[4, 3, 5, 12]].tolist() == [pytest.approx(4 / 15)] * 3 + [pytest.approx(3 / 15)]


def test_transposing_a_passage_does_not_change_its_features():
    # C and G tie for the strongest pitch class: every transposition must still pick the same rotation
    melody = [(0, Q, 60), (Q, Q, 67), (2 * Q, Q, 64), (3 * Q, Q, 60), (BAR, Q, 67), (BAR + Q, 2 * Q, 76),
              (BAR + Q, Q, 55), (BAR + 3 * Q, Q, 62)]
    base = sf.passage_features(_score(melody))
    for shift in range(-6, 7):
        moved = sf.passage_features(_score([(t, d, p + shift) for t, d, p in melody]))
        np.testing.assert_allclose(moved, base, err_msg=f"transposed by {shift}")
    assert base[PART["pitch_classes"]][0] == base[PART["pitch_classes"]].max()


def test_twice_the_notes_is_twice_the_density():
    calm, busy = _score(_quarters(4)), _score(_quarters(4, per_bar=8))
    assert sf.notes_and_bars(calm) == (16, 4) and sf.notes_and_bars(busy) == (32, 4)
    assert sf.notes_per_bar(busy) == 2 * sf.notes_per_bar(calm) == 8
    density = PART["density"]
    assert sf.passage_features(busy)[density] - sf.passage_features(calm)[density] == pytest.approx(1.0)
    # the bars counted run from the first onset's bar to the last one's: a late start is not an empty bar
    late = _score([(2 * BAR + t, d, p) for t, d, p in _quarters(2)])
    assert sf.notes_and_bars(late) == (8, 2)


def test_a_continuation_takes_its_prompts_meter():
    notes = _score([(k * Q, Q, 60) for k in range(6)])  # 4/4 by default
    waltz = sf.with_meter(notes, _score([(0, Q, 60)], meter=(3, 4)))
    assert sf.notes_and_bars(notes) == (6, 2) and sf.notes_and_bars(waltz) == (6, 2)
    assert set(np.flatnonzero(sf.onset_histograms(waltz)[0])) == {0, 5, 10}
    with pytest.raises(ValueError, match="no notes"):
        sf.passage_features(symusic.Score(Q))


def test_nearest_style_picks_the_right_centroid_and_standardizes():
    rng = np.random.default_rng(0)
    density, spread = PART["density"].start, PART["pitch_spread"].start
    means = {"calm": np.zeros(sf.FEATURE_SIZE), "busy": np.zeros(sf.FEATURE_SIZE)}
    means["busy"][density], means["busy"][spread] = 1.0, 0.1
    noise = np.full(sf.FEATURE_SIZE, 0.01)
    noise[density] = 2.0  # density varies a lot within a style, the spread hardly
    vectors = {name: [m + rng.normal(0, noise) for _ in range(50)] for name, m in means.items()}
    centroids, scale = sf.fit_centroids(vectors)
    assert set(centroids) == {"calm", "busy"} and scale.shape == (sf.FEATURE_SIZE,) and (scale > 0).all()
    for name, mean in means.items():
        assert sf.nearest_style(mean, centroids, scale) == name
    # busy's density with calm's spread: the spread decides, since density is noisy within a style
    mixed = means["busy"].copy()
    mixed[spread] = 0.0
    assert sf.nearest_style(mixed, centroids, scale) == "calm"
    distances = sf.style_distances(mixed, centroids, scale)
    assert distances["calm"] < distances["busy"]


# --- benchmarks/style_control.py with a tiny random model --------------------------------------------------

class _Split:
    """What the benchmark reads of a TokenSplit: pieces, their sources (with a style) and their count."""

    def __init__(self, pieces: list[list[int]], styles: list[str]) -> None:
        self.pieces, self.styles = pieces, styles

    def __len__(self) -> int:
        return len(self.pieces)

    def piece(self, i: int) -> np.ndarray:
        return np.asarray(self.pieces[i], dtype=np.int64)

    def source(self, i: int) -> dict:
        return {"path": f"piece{i}.mid", "aug": "", "style": self.styles[i]}


@pytest.fixture()
def style_control(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import style_control

    return style_control


@pytest.mark.slow
def test_the_benchmark_measures_each_part(style_control, capsys):
    from musicmha import ModelConfig, MusicTransformer
    from musicmha.data.tokenizer import MusicTokenizer
    from musicmha.generation.music_generator import MusicGenerator

    tokenizer = MusicTokenizer.from_config()
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4,
                                         max_seq_len=128, dropout=0.0))
    generator = MusicGenerator(model, tokenizer)
    cond = tokenizer.condition_tokens
    prompts = sorted((ROOT / "data" / "prompts").glob("*.mid"))
    pieces = [[tokenizer.bos_id, *tokenizer.encode(p), tokenizer.eos_id] for p in prompts]
    split = _Split(pieces, ["chorale", "fiddle-tune"] * (len(pieces) // 2) + ["chorale"] * (len(pieces) % 2))
    args = style_control.arguments().parse_args(["--checkpoint", "-", "--data", "-", "--pieces", "3", "--bars",
                                                 "1", "--reference-pieces", "2", "--levels", "2,6"])
    assert isinstance(args, argparse.Namespace)

    found = style_control.recognition(model, cond, split, ["chorale", "fiddle-tune"], args)
    assert found["window"] == 125 and len(found["pieces"]) == 3 and 0 <= found["share"] <= 1
    assert {p["style"] for p in found["pieces"]} == {"chorale", "fiddle-tune"}

    by_style = style_control.pieces_by_style(split)
    steered = style_control.steering(generator, split, by_style, ["chorale", "fiddle-tune"], prompts[:1], args)
    assert [o["style"] for o in steered["outputs"]] == [None, "chorale", "fiddle-tune"]
    assert all(o["nearest"] in ("chorale", "fiddle-tune", None) for o in steered["outputs"])

    dense = style_control.density(generator, prompts[:1], args)
    assert [o["density"] for o in dense["outputs"]] == [2, 6]
    out = capsys.readouterr().out
    for title in ("1. Style recognition", "2. Style steering", "3. Density control", "Spearman"):
        assert title in out
    from common import spearman  # benchmarks/common.py, on the path with style_control

    assert spearman([1, 2, 3, 4], [1, 4, 9, 9]) == pytest.approx(np.corrcoef([1, 2, 3, 4], [1, 2, 3.5, 3.5])[0, 1])
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))
