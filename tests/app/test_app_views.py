"""Issue 30, items 4, 6 and 7 without a browser: a long prompt heard up to where the model continues, bar
numbers on every roll and thinned where they would run together, and the legend written under the roll."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

import symusic  # noqa: E402
from app_helpers import make_tiny_checkpoint  # noqa: E402

from musicmha.app import service  # noqa: E402
from musicmha.app.handlers import AppConfig, Handlers, new_session  # noqa: E402
from musicmha.app.regenerate import Regenerate  # noqa: E402
from musicmha.app.service import ModelCache, TempFiles, audible_start, list_examples, render_view  # noqa: E402
from musicmha.app.views import LABEL_GAP, bar_labels  # noqa: E402
from musicmha.render.audio import RELEASE_TAIL, music_end_seconds  # noqa: E402

SETTINGS = dict(unit="bars", length=2, temperature=1.0, top_k=0, top_p=1.0, seed=7, random_seed=False,
                variations=2, prompt_tokens=0, checkpoint=None)
BARS = re.compile(r'class="mm-bar"[^>]*>(\d+)<')


@pytest.fixture(scope="module")
def handlers(tmp_path_factory) -> Handlers:
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    return Handlers(AppConfig(checkpoints=[folder], checkpoint=folder, examples=list_examples(),
                              files=TempFiles(tmp_path_factory.mktemp("files")), cache=ModelCache()))


def _seconds(path: str) -> float:
    with wave.open(path) as wav:
        return wav.getnframes() / wav.getframerate()


def _scale(bars: int, qpm: float = 60.0) -> symusic.Score:
    """A 4/4 piece of `bars` bars, one whole note a bar, at `qpm`: bar k starts at 4 (k - 1) beats."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, qpm))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("piano", program=0)
    track.notes.extend([symusic.Note(k * 1920, 1920, 60 + k % 12, 80) for k in range(bars)])
    score.tracks.append(track)
    return score


def test_a_long_piece_is_heard_from_the_bar_where_its_last_minutes_start(monkeypatch):
    """Item 4: the prompt player cut a 212 s song at 3:01, before the bars the model continues from."""
    score = _scale(60)  # 240 s at 60 BPM, 4 s a bar
    assert audible_start(score, limit=300.0) == (1, 0)  # fits: the whole piece
    bar, tick = audible_start(score, limit=180.0)
    assert bar == 16 and tick == 15 * 1920  # bars 16-60: 180 s, up to the very end
    monkeypatch.setattr(service, "MAX_AUDIO_SECONDS", 180.0)
    view = render_view(score, "prompt-audio", title="prompt")
    rate, samples = view.audio
    assert len(samples) / rate == pytest.approx(180.0 + RELEASE_TAIL, abs=0.01)  # the end is heard
    assert "from bar 16" in view.heard and "the last 3:00" in view.heard and "4:00" in view.heard
    assert "not in the player" in view.html and float(re.search(r'data-heard="([0-9.]+)"', view.html)[1]) == 60.0
    assert BARS.findall(view.html)[0] == "1"  # the roll is still the whole piece, numbered from bar 1


def test_the_prompt_says_where_its_player_starts(handlers, monkeypatch):
    monkeypatch.setattr(service, "MAX_AUDIO_SECONDS", 10.0)  # the chorale (about 20 s) as a long song
    file, audio, roll, info, *_ = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    score = symusic.Score(file)
    bar, tick = audible_start(score, 10.0)
    assert bar > 1 and f"from bar {bar}" in info and "player plays the last" in info
    heard = music_end_seconds(score) - float(re.search(r'data-heard="([0-9.]+)"', roll)[1])
    assert _seconds(audio) == pytest.approx(heard + RELEASE_TAIL, abs=0.05) and heard <= 10.0
    # the bar range's redraw of the same roll keeps the shading and the sentence
    redrawn = Regenerate(handlers).prompt_roll(score, 2, 3)
    assert "not in the player" in redrawn and f"from bar {bar}" in redrawn and "Bars 2-3 of" in redrawn


def test_a_short_prompt_is_heard_whole(handlers):
    _, audio, roll, info, *_ = handlers.pick_example("bach_bwv66.6_chorale", new_session())
    assert "player plays" not in info and "not in the player" not in roll and 'data-heard="0.0000"' in roll


def test_every_result_roll_numbers_its_bars(handlers):
    """Item 6: result rolls counted seconds only; musicians count bars."""
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    *_, records = list(handlers.generate(prompt, **SETTINGS))[-1]
    short, whole = handlers.views(False, records), handlers.views(True, records)
    prompt_bars = 5  # the chorale's bars; the short view starts at its 4th (its last 2 bars, then the new ones)
    for index in (0, 1):
        shown = [int(n) for n in BARS.findall(short[4 + index])]
        assert shown[:2] == [prompt_bars - 1, prompt_bars] and shown == list(range(shown[0], shown[-1] + 1))
        assert len(shown) >= 3  # at least one new bar numbered after the prompt's
        assert [int(n) for n in BARS.findall(whole[4 + index])][:6] == [1, 2, 3, 4, 5, 6]


def test_bar_labels_never_run_together():
    """Item 7 (and 6): a bar every 5 px gets every 5th number (22 px apart at least), from bar 1."""
    dense = [(n, 40 + 5.0 * (n - 1)) for n in range(1, 101)]
    shown = bar_labels(dense, right=1000)
    assert [n for n, _ in shown][:4] == [1, 6, 11, 16]
    assert all(b - a >= LABEL_GAP for (_, a), (_, b) in zip(shown, shown[1:]))
    wide = [(n, 40 + 100.0 * (n - 1)) for n in range(1, 9)]
    assert [n for n, _ in bar_labels(wide, right=1000)] == list(range(1, 9))  # room: every bar
    assert [n for n, _ in bar_labels(wide, right=500)] == [1, 2, 3, 4, 5]  # none past the plot's edge
    # an absurd tempo squeezes every bar into one pixel column (the MIDI fuzz found it): bar 1 alone
    assert bar_labels([(n, 40.0) for n in range(1, 30)], right=1000) == [(1, 40.0)]


def test_the_legend_is_written_under_the_roll(handlers):
    """Item 7: on a phone the picture's legend is too small to read; the HTML one under it is not."""
    score = _scale(4)
    drums = symusic.Track("", program=0, is_drum=True)
    drums.notes.append(symusic.Note(0, 120, 36, 90))
    score.tracks.append(drums)
    html = render_view(score, "result-audio-1").html
    legend = re.search(r'<div class="mm-legend">(.*?)</div>', html)[1]
    assert re.findall(r"</i>([^<]+)</span>", legend) == ["piano (0)", "Drums"]
    assert "background:#" in legend


def test_the_page_style_hides_empty_downloads_and_thins_labels():
    from musicmha.app.page_script import CSS, PLAYHEAD_JS

    assert '[id^="result-midi-"]:not(:has(a)) { display: none' in CSS  # no 264 px empty MIDI box
    assert "musicmhaThin" in PLAYHEAD_JS and "dataset.heard" in PLAYHEAD_JS
