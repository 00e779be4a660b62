"""MusicTokenizer: configuration checks, offline save/load, BPE, and lossless round trips on real music."""

from __future__ import annotations

from collections import Counter

import pytest
import symusic
from datafiles import PROMPTS

from musicmha.errors import ConfigError, MidiError
from musicmha.data.midi_io import load_midi
from musicmha.data.tokenizer import MusicTokenizer, TokenizerConfig, program_names


@pytest.fixture(scope="module")
def tok() -> MusicTokenizer:
    return MusicTokenizer.from_config(TokenizerConfig())


@pytest.mark.parametrize("bad", [
    {"kind": "NoSuchTokenizer"}, {"pitch_range": (60, 40)}, {"num_velocities": 0},
    {"special_tokens": ("PAD", "BOS")}, {"beat_res": {(4, 0): 8}}, {"use_programs": False},
])
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ConfigError):
        TokenizerConfig(**bad)


def test_config_survives_json_round_trip():
    cfg = TokenizerConfig(num_velocities=16)
    assert TokenizerConfig(**cfg.to_dict()) == cfg


def test_special_ids_are_distinct_and_in_vocab(tok):
    ids = {tok.bos_id, tok.eos_id, tok.pad_id}
    assert len(ids) == 3 and all(0 <= i < tok.vocab_size for i in ids)
    assert tok.token_name(tok.bos_id) == "BOS_None" and tok.token_name(tok.eos_id) == "EOS_None"


def test_what_callers_need_without_reaching_through(tok, tmp_path):
    """bar id, vocabulary, pitch range, time base, grammar spec and error ratio, checked against miditok read
    on its own from the saved file (the independent reference)."""
    import miditok

    reference = miditok.REMI(params=tok.save(tmp_path))
    assert tok.bar_id == reference.vocab["Bar_None"] and tok.vocab == reference.vocab
    assert all(tok.token_name(i) == reference[i] for i in (0, tok.bar_id, tok.vocab_size - 1))
    assert tok.pitch_range == tuple(reference.config.pitch_range) == (21, 109)
    assert tok.ticks_per_quarter == reference.time_division
    spec = tok.grammar_spec()
    assert spec.bar_id == tok.bar_id and spec.tokens[tok.bar_id] == "Bar_None" and len(spec.tokens) == tok.vocab_size
    assert (spec.bos_id, spec.eos_id, spec.pad_id) == (tok.bos_id, tok.eos_id, tok.pad_id)
    ids = tok.encode(PROMPTS[0])
    assert tok.token_error_ratio([tok.bos_id, *ids, tok.eos_id]) == 0.0 == tok.token_error_ratio([tok.bos_id])
    broken = [tok.vocab["Velocity_63"], tok.vocab["Pitch_60"]] * 10  # Velocity before its Pitch: wrong successions
    assert tok.token_error_ratio(broken) == reference.tokens_errors(broken) >= 0.5
    names = program_names()
    assert len(names) == 128 and names[0] == "Acoustic Grand Piano"


def _grid_durations(tok: MusicTokenizer) -> list[float]:
    return [b + k / res for (a, b_end), res in tok.config.beat_res.items()
            for b in [a] for k in range(1, (b_end - a) * res + 1)]


def _notes(score: symusic.Score) -> list[tuple[int, int, float, float]]:
    """(program, pitch, onset in beats, duration in beats) of every note; drums as program -1."""
    out = []
    for track in score.tracks:
        program = -1 if track.is_drum else track.program
        for n in track.notes:
            out.append((program, n.pitch, n.time / score.tpq, n.duration / score.tpq))
    return out


@pytest.mark.parametrize("path", PROMPTS, ids=[p.stem for p in PROMPTS])
def test_round_trip_keeps_every_note(tok, path):
    original = load_midi(path)
    decoded = tok.decode(tok.encode(original))
    onset_res = max(tok.config.beat_res.values())  # REMI positions: the finest subdivision
    durations = _grid_durations(tok)
    expected = Counter((p, pitch, round(t * onset_res) / onset_res) for p, pitch, t, _ in _notes(original))
    got = _notes(decoded)
    assert Counter((p, pitch, t) for p, pitch, t, _ in got) == expected
    # Each decoded duration is the grid value nearest to the duration of an original note with the same key.
    originals: dict[tuple, list[float]] = {}
    for p, pitch, t, d in _notes(original):
        originals.setdefault((p, pitch, round(t * onset_res) / onset_res), []).append(d)
    for p, pitch, t, d in got:
        best = [min(durations, key=lambda g, d0=d0: abs(g - d0)) for d0 in originals[(p, pitch, t)]]
        assert any(abs(d - b) < 1e-9 for b in best), (p, pitch, t, d, best)


def test_drums_survive_and_are_not_merged_with_pitched_tracks(tok):
    score = load_midi(PROMPTS[0])
    drums = symusic.Track("drums", 0, True)
    for beat in range(8):
        drums.notes.append(symusic.Note(beat * score.tpq, score.tpq // 2, 36 + beat % 3 * 2, 100))
    score.tracks.append(drums)
    decoded = tok.decode(tok.encode(score))
    drum_tracks = [t for t in decoded.tracks if t.is_drum]
    assert len(drum_tracks) == 1
    assert [(n.time / decoded.tpq, n.pitch) for n in drum_tracks[0].notes] == [(b, 36 + b % 3 * 2) for b in range(8)]


def test_encode_has_no_bos_eos_and_decode_ignores_them(tok):
    ids = tok.encode(PROMPTS[0])
    assert tok.bos_id not in ids and tok.eos_id not in ids and tok.pad_id not in ids
    plain = _notes(tok.decode(ids))
    assert _notes(tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id])) == plain


def test_save_load_offline_gives_same_ids(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    file = tok.save(tmp_path)
    assert file == tmp_path / "tokenizer.json" and file.is_file()
    for loaded in (MusicTokenizer.load(tmp_path), MusicTokenizer.load(file)):
        assert loaded.vocab_size == tok.vocab_size
        assert all(loaded.encode(p) == tok.encode(p) for p in PROMPTS)


def test_bad_input(tok, tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi at all")
    with pytest.raises(MidiError):
        tok.encode(bad)


def test_bpe_compresses_and_decodes_to_the_same_music(tmp_path):
    base = MusicTokenizer.from_config()
    bpe = MusicTokenizer.from_config()
    target = base.vocab_size + 40
    bpe.train_bpe(PROMPTS, target)
    assert bpe.is_bpe and bpe.vocab_size == target
    bpe.save(tmp_path)
    reloaded = MusicTokenizer.load(tmp_path)
    for path in PROMPTS:
        plain, merged = base.encode(path), reloaded.encode(path)
        assert len(merged) <= len(plain)
        assert max(merged) < target
        assert _notes(reloaded.decode(merged)) == _notes(base.decode(plain))
    assert sum(map(len, map(reloaded.encode, PROMPTS))) < sum(map(len, map(base.encode, PROMPTS)))
    with pytest.raises(ConfigError):
        bpe.train_bpe(PROMPTS, 70_000)
