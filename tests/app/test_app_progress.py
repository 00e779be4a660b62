"""Issue 30 item 5: progress per variation, never past the request, with the time left; after Stop, a
variation without new notes says so, offers nothing to continue, and is not counted as kept."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")

import symusic  # noqa: E402
from app_helpers import make_tiny_checkpoint  # noqa: E402

import musicmha.app.handlers as handlers_module  # noqa: E402
from musicmha.app.handlers import AppConfig, Handlers, button_labels, new_session  # noqa: E402
from musicmha.app.progress import bars_done, measure, time_left  # noqa: E402
from musicmha.app.service import ModelCache, TempFiles, list_examples  # noqa: E402
from musicmha.generation.request import GenerationRequest  # noqa: E402

SETTINGS = dict(unit="bars", length=8, temperature=1.0, top_k=0, top_p=1.0, seed=3, random_seed=False,
                variations=2, prompt_tokens=0, checkpoint=None)
B = 1  # the bar token in the synthetic rows below


@pytest.fixture(scope="module")
def handlers(tmp_path_factory) -> Handlers:
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    return Handlers(AppConfig(checkpoints=[folder], checkpoint=folder, examples=list_examples(),
                              files=TempFiles(tmp_path_factory.mktemp("files")), cache=ModelCache()))


def test_bars_are_counted_per_variation_and_never_past_the_request():
    request = GenerationRequest(bars=8)
    finishing = [5, 5, 5]  # still in the prompt's last bar: notes, no bar done yet
    two = [5, B, 5, 5, B, 5, 5, B, 5]  # bars 1 and 2 done, the third begun
    over = [B, 5] * 9 + [B]  # nine new bar lines: 8 bars done (the 9th line closes bar 8)
    progress = measure([finishing, two, over], B, request, steps=19)
    assert progress.done == (0, 2, 8) and progress.total == 8 and progress.fraction == 0
    assert progress.summary() == "bars done: 0, 2 and 8 of 8"
    assert measure([over], B, request, steps=19).summary() == "bars done: 8 of 8"  # not 'bar 9'
    assert measure([two, two], B, request, 9).summary() == "bars done: 2 of 8 in each variation"
    # the bar in progress counts by the tokens an average bar took: bar 3 has 2 (its bar line and a note) of 3
    assert bars_done(two, B, 8, first_bar_given=False) == (2, pytest.approx(2 + 2 / 3))


def test_regenerated_bars_count_from_the_given_first_bar():
    request = GenerationRequest()
    assert measure([[5, 5]], B, request, 2, infill_bars=(3, 4)).summary() == "bars done: 0 of 2"
    assert measure([[5, B, 5, B]], B, request, 4, infill_bars=(3, 4)).summary() == "bars done: 2 of 2"


def test_seconds_and_model_steps():
    prompt = symusic.Score(480)
    prompt.tempos.append(symusic.Tempo(0, 60))  # 4 s a bar in 4/4
    seconds = measure([[B, 5, B, 5, B]], B, GenerationRequest(seconds=10), 5, prompt)
    assert seconds.unit == "seconds" and seconds.done == (8.0,) and seconds.summary() == "seconds done: about 8 of 10"
    assert measure([[B] * 9], B, GenerationRequest(seconds=10), 9, prompt).done == (10.0,)  # capped
    steps = measure([[5] * 300], B, GenerationRequest(max_new_tokens=256), 300)
    assert steps.summary() == "model steps done: 256 of 256" and steps.fraction == 1.0


def test_time_left():
    assert time_left(0.0, 30.0) == "estimating the time left"
    assert time_left(0.25, 10.0) == "about 30 s left"
    assert time_left(0.1, 20.0) == "about 3 min 0 s left"


def test_the_status_line_never_counts_past_the_request(handlers, monkeypatch):
    monkeypatch.setattr(handlers_module, "POLL_EVERY", 0.01)
    prompt = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    statuses = [out[0] for out in handlers.generate(prompt, **SETTINGS) if isinstance(out[0], str)]
    running = [s for s in statuses if "bars done" in s]
    assert running, statuses
    for status in running:
        counts = re.search(r"bars done: ([\d, and]+) of (\d+)", status)
        assert int(counts[2]) == 8 and all(int(n) <= 8 for n in re.findall(r"\d+", counts[1])), status
        assert "left" in status or "estimating" in status or "finishing" in status
    assert statuses[-1].startswith("Done")


def _stopped_run(handlers: Handlers, records_notes: list[int]):
    """A stopped job whose variations wrote `records_notes` new notes (0: stopped before its first)."""
    prompt_file = handlers.pick_example("bach_bwv66.6_chorale", new_session())[0]
    prompt = symusic.Score(prompt_file)
    results = []
    for k, notes in enumerate(records_notes):
        continuation = symusic.Score(prompt.ticks_per_quarter)
        track = symusic.Track("new", program=0)
        track.notes.extend([symusic.Note(i * 480, 480, 60, 80) for i in range(notes)])
        continuation.tracks.append(track)
        score = prompt.copy()
        score.tracks[0].notes.extend([symusic.Note(int(prompt.end()) + i * 480, 480, 62, 80) for i in range(notes)])
        results.append(SimpleNamespace(score=score, boundary_tick=int(prompt.end()), seed=11 + k,
                                       continuation=continuation, span=None))
    rows = [[5, B, 5, B, 5] if notes else [5] for notes in records_notes]
    request = GenerationRequest(bars=32)
    progress = measure(rows, B, request, 3, prompt)
    job = SimpleNamespace(results=results, stopped=True, timed_out=False, prompt=prompt, request=request,
                          seconds=lambda: 2.0, progress=lambda: progress)
    return handlers.finish(job, "bach", 0, False, handlers_module.roll_size(len(results)))


def test_a_variation_stopped_before_its_notes_says_so_and_offers_nothing(handlers):
    status, seed, *rest = _stopped_run(handlers, [3, 0, 2])
    audios, rolls, midis, records = rest[0:4], rest[4:8], rest[8:12], rest[12]
    assert status.startswith("Stopped after 2.0 s (bars done: 1, 0 and 1 of 32)")
    assert "2 partial variations kept, seed 11" in status and "variation 2 had no new notes yet" in status
    assert audios[1] is None and midis[1] is None and "stopped before its first new notes" in rolls[1]
    assert audios[0] and midis[0] and midis[2]
    buttons = button_labels(records)
    assert [b.interactive for b in buttons] == [True, False, True, False]
    with pytest.raises(gr.Error, match="nothing to continue"):
        handlers.continue_from(1, records, new_session())


def test_a_run_stopped_before_any_notes_keeps_nothing(handlers):
    status, *rest = _stopped_run(handlers, [0, 0])
    assert status.endswith("no new notes yet, so nothing is kept.") and "partial variation" not in status
    assert not any(b.interactive for b in button_labels(rest[12]))
