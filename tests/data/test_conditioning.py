"""Style and density rows (musicmha/data/conditioning.py, styles.py) and their path through prepare."""

import json

import numpy as np
import pytest

from musicmha.data.conditioning import ConditionTokens, condition_rows
from musicmha.data.styles import (DENSITY_BOUNDS, DENSITY_LEVELS, STYLES, density_level, level_notes_per_bar,
                                  parse_style, style_of_piece)
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.errors import ConfigError

BOS, BAR, NOTE = 1, 2, 3  # a toy vocabulary: 3 is a note's pitch, 10.. other music tokens


def toy_tokens() -> ConditionTokens:
    note_ids = np.zeros(64, dtype=bool)
    note_ids[NOTE] = True
    return ConditionTokens(styles={"rock": 40, "waltz": 41}, densities=tuple(range(50, 50 + DENSITY_LEVELS)),
                           note_ids=note_ids, bar_id=BAR, bos_id=BOS)


def naive_level(tokens) -> int:
    notes, bars = sum(t == NOTE for t in tokens), max(1, sum(t == BAR for t in tokens))
    return 1 + sum(notes / bars > bound for bound in DENSITY_BOUNDS)


def stream_of(pieces):
    """Sequences BOS + body back to back, and where each starts."""
    starts, tokens = [], []
    for body in pieces:
        starts.append(len(tokens))
        tokens += [BOS, *body]
    return np.array(tokens), np.array(starts)


def test_rows_open_with_their_pieces_style_and_the_windows_density():
    cond = toy_tokens()
    first = [BAR, NOTE, NOTE, 10, BAR, NOTE, 11, 12, 13]
    second = [BAR] + [NOTE] * 30
    stream, starts = stream_of([first, second])
    styles = np.array([40, 41])
    length = 8
    row_starts = np.array([2, 0, 7])  # inside piece 1; at its BOS; inside it with piece 2's BOS in the window
    batch = np.stack([stream[s:s + length] for s in row_starts])
    out = condition_rows(batch, row_starts, len(stream), starts, styles, cond, 0.0, np.arange(3))
    assert out.shape == batch.shape
    level = cond.densities[naive_level(batch[0]) - 1]
    assert out[0].tolist() == [40, level, *batch[0][:6]]
    assert out[1].tolist() == [BOS, 40, cond.densities[naive_level(batch[1]) - 1], *batch[1][1:6]]
    bos = int(np.flatnonzero(batch[2] == BOS)[0])
    expected = [40, cond.densities[naive_level(batch[2]) - 1], *batch[2][:bos + 1], 41, *batch[2][bos + 1:]]
    assert out[2].tolist() == expected[:length]
    # dropout 1: the plain windows; no style (-1): density only
    assert np.array_equal(condition_rows(batch, row_starts, len(stream), starts, styles, cond, 1.0, np.arange(3)),
                          batch)
    unstyled = condition_rows(batch[:1], row_starts[:1], len(stream), starts, np.array([-1, -1]), cond, 0.0,
                              np.arange(1))
    assert unstyled[0].tolist() == [level, *batch[0][:7]]


def test_dropout_drops_about_its_share_and_each_row_replays_from_its_seed():
    cond = toy_tokens()
    stream, starts = stream_of([[BAR, NOTE, 10] * 20])
    batch = np.stack([stream[5:15]] * 400)
    seeds = np.arange(400)
    out = condition_rows(batch, np.full(400, 5), len(stream), starts, np.array([40]), cond, 0.3, seeds)
    styled = out[:, 0] == 40
    with_density = np.isin(out[:, :2], cond.densities).any(axis=1)
    assert 0.6 < styled.mean() < 0.8 and 0.6 < with_density.mean() < 0.8  # kept at 1 - 0.3 each
    assert 0.35 < (styled & with_density).mean() < 0.6  # independently (0.49)
    assert np.array_equal(out, condition_rows(batch, np.full(400, 5), len(stream), starts, np.array([40]), cond,
                                              0.3, seeds))


@pytest.mark.parametrize("notes,bars", [(0, 1), (3, 1), (4, 1), (12, 2), (100, 1), (7, 0)])
def test_density_levels(notes, bars):
    per_bar = notes / max(1, bars)
    level = density_level(notes, bars)
    assert 1 <= level <= DENSITY_LEVELS
    if level > 1:
        assert per_bar > DENSITY_BOUNDS[level - 2]
    if level < DENSITY_LEVELS:
        assert per_bar <= DENSITY_BOUNDS[level - 1]
        assert density_level(round(level_notes_per_bar(level) * 10), 10) == level


def test_style_names_and_errors():
    assert parse_style("Bossa Nova") == "bossa-nova" and parse_style("fiddle_tune") == "fiddle-tune"
    with pytest.raises(ConfigError, match="unknown style 'disco'.*chorale.*bossa-nova"):
        parse_style("disco")
    assert style_of_piece({"collection": "bach"}) == "chorale"
    assert style_of_piece({"collection": "arrangements", "family": "bossa nova"}) == "bossa-nova"
    assert style_of_piece({"collection": "demos"}) is None


def test_the_tokenizer_knows_its_conditioning_tokens_and_decoding_drops_them():
    tok = MusicTokenizer.from_config()
    cond = tok.condition_tokens
    assert set(cond.styles) == set(STYLES) and len(cond.densities) == DENSITY_LEVELS
    names = {tok.token_name(i) for i in np.flatnonzero(cond.note_ids)}
    assert names and all(n.startswith(("Pitch_", "PitchDrum_")) for n in names)
    ids = tok.encode(_two_note_score())
    with_conditioning = [tok.bos_id, cond.styles["rock"], cond.densities[2], *ids]
    assert tok.decode(with_conditioning).note_num() == tok.decode(ids).note_num() == 2


def _two_note_score():
    import symusic

    score = symusic.Score(480)
    track = symusic.Track(program=0)
    track.notes.append(symusic.Note(0, 480, 60, 80))
    track.notes.append(symusic.Note(480, 480, 64, 80))
    score.tracks.append(track)
    return score


def test_prepare_keeps_each_corpus_pieces_style(real_tokens):
    manifest = json.loads((real_tokens / "manifest.json").read_text())
    assert manifest["styles"] == {"chorale": manifest["files_used"]}
    lines = (real_tokens / "train.pieces.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["style"] == "chorale" for line in lines)
