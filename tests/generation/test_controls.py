"""The tempo a piece from nothing is asked for, against the tempo steps the tokenizer writes (issue 30 item 8:
100 BPM asked, 101 written)."""

from __future__ import annotations

import pytest
import symusic

from musicmha.data.tokenizer import MusicTokenizer
from musicmha.errors import ConfigError
from musicmha.generation.controls import Opening, exact_tempo, nearest_tempo, tempo_tokens


@pytest.fixture(scope="module")
def spec():
    return MusicTokenizer.from_config().grammar_spec()


def test_a_tempo_is_written_as_its_nearest_step(spec):
    steps = sorted(tempo_tokens(spec))
    assert steps[0] == 40.0 and steps[-1] == 250.0 and 100.0 not in steps  # why 100 BPM became 101
    assert nearest_tempo(spec, 100) == 100.97 and nearest_tempo(spec, 250) == 250.0
    token = Opening(tempo=100).token_ids(spec)[-1]
    assert spec.tokens[token] == "Tempo_100.97"
    with pytest.raises(ConfigError, match="outside what this tokenizer can write"):
        nearest_tempo(spec, 300)


def test_the_file_gets_the_tempo_asked_for():
    score = symusic.Score(480)
    score.tempos.extend([symusic.Tempo(0, 100.97), symusic.Tempo(1920, 60.32), symusic.Tempo(3840, 100.97)])
    assert exact_tempo(score, 100.97, 100) == 2
    assert [round(t.qpm, 2) for t in score.tempos] == [100.0, 60.32, 100.0]
    assert symusic.Score.from_midi(score.dumps_midi()).tempos[0].mspq == 600_000  # exactly 100 BPM in the MIDI
