"""The app's event handlers as plain functions: UI values in, UI values out, library errors turned into
one-line messages. No model logic here: generation is `MusicGenerator.continue_midi` (run by job.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import symusic

from musicmha.errors import MusicmhaError
from musicmha.generation.request import GenerationRequest
from musicmha.render.pianoroll import track_keys
from musicmha.app import bars as bar_range
from musicmha.app import history
from musicmha.app.bars import edit_name
from musicmha.app.history import new_session  # noqa: F401 (re-exported for the UI and tests)
from musicmha.app.job import GenerationJob, describe
# AppConfig, the button labels and button_labels are re-exported for the UI, regenerate.py and the tests
from musicmha.app.pages import (CONTINUE_LABEL, KEEP_LABEL, AppConfig, PromptViews, button_labels,  # noqa: F401
                                has_music, plural, prompt_palette, seed_buttons)
from musicmha.app.service import write_midi
from musicmha.app.settings import MAX_VARIATIONS, asked_words, page_request
from musicmha.app.views import RollSize, placeholder_html, roll_html, roll_size, window, window_start

logger = logging.getLogger(__name__)

STREAM_EVERY = 1.5  # seconds between live piano roll updates while generating
POLL_EVERY = 0.25  # seconds between status updates (and checks for the end of the run)


def _session_key(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


class Handlers(PromptViews):
    """The page's handlers: the prompt side and result cards (pages.PromptViews), and running generations."""

    def __init__(self, config: AppConfig) -> None:
        super().__init__(config)
        self._jobs: dict[str, GenerationJob] = {}  # the running generation of each browser session
        self._lock = threading.Lock()

    # --- generation ----------------------------------------------------------------------------------
    def checkpoint_folder(self, value: str | None) -> Path:
        allowed = {str(p): p for p in self.config.checkpoints}
        if not value:
            if self.config.checkpoint is None:
                raise gr.Error("no checkpoint: put one under checkpoints/ or start the app with --checkpoint")
            return self.config.checkpoint
        if value not in allowed:
            raise gr.Error(f"unknown checkpoint {value!r}")
        return allowed[value]

    def prepare(self, prompt: str | None, settings: dict[str, Any], *,
                infill: bool = False) -> tuple[Any, symusic.Score | None, GenerationRequest]:
        """Every check a request needs before anything on the page changes: the page's settings (by name, see
        settings.CONTINUE_SETTINGS) made into one request, the prompt, the checkpoint, and the request against
        the model (`MusicGenerator.check`: the tempo, meter and instruments its tokenizer can write)."""
        try:
            request = page_request(**settings)
        except MusicmhaError as error:
            raise gr.Error(str(error)) from None
        _, score = self.read_prompt(prompt)
        if score is not None and not request.opening.empty:
            raise gr.Error("tempo and time signature are for starting from nothing; a prompt keeps its own "
                           "(press 'Start from nothing' or set them back to the model's choice)")
        try:
            generator = self.config.cache.get(self.checkpoint_folder(settings.get("checkpoint")))
            generator.check(request, has_prompt=score is not None, infill=infill)
        except MusicmhaError as error:
            raise gr.Error(str(error)) from None
        context = generator.model.config.max_seq_len
        if request.prompt_tokens and request.prompt_tokens > context:
            raise gr.Error(f"memory must be at most {context} model steps for this model (what it can hear at "
                           f"once), not {request.prompt_tokens}")
        return generator, score, request

    def check(self, prompt: str | None, **settings: Any) -> None:
        """The page runs this first: a bad value gives one message and nothing else changes."""
        self.prepare(prompt, settings)

    def stop(self, request: gr.Request = None) -> None:
        with self._lock:
            job = self._jobs.get(_session_key(request))
        if job is not None:
            job.stop.set()

    def generate(self, prompt: str | None, full_view: bool | None = False, session: dict | None = None,
                 request: gr.Request = None, **settings: Any) -> Iterator[tuple]:
        """Stream (status, seed, 4 audios, 4 piano rolls, 4 MIDI files, results): live sketches of every
        variation while the model samples in a worker thread, then the rendered results, also after Stop.
        `settings`: the page's values by name (settings.CONTINUE_SETTINGS, then STYLE_SETTINGS)."""
        generator, score, asked = self.prepare(prompt, settings)
        count, full = asked.num_samples, bool(full_view)
        base, steps, edits = self.lineage(prompt, session)
        size = roll_size(count)
        job = GenerationJob(generator, score, asked, self.config.time_limit)
        what = ", ".join(filter(None, (f"{plural(count, 'variation')} of {describe(asked)}",
                                       asked_words(asked.style, asked.density, asked.pitch_range))))
        waiting = [placeholder_html(f"Variation {i + 1}: waiting for its first notes...") if i < count else ""
                   for i in range(MAX_VARIATIONS)]
        yield from self.follow(job, request, f"Generating {what}", waiting,
                               lambda: self._sketches(job, score, full, size, count))
        yield self.finish(job, base, steps, full, size, edits)

    def lineage(self, prompt: str | None, session: dict | None) -> tuple[str, int, list[str]]:
        """What the results are named after: the current prompt's piece, its continuations and edits."""
        entry = history.current(session) if session else None
        if entry and entry["data"] is not None:
            return entry["base"], entry["steps"], list(entry.get("edits") or [])
        return (Path(prompt).stem if prompt else "new piece"), 0, []

    def follow(self, job: GenerationJob, request: gr.Request | None, doing: str, waiting: list[str],
               sketch: Callable[[], list] | None = None) -> Iterator[tuple]:
        """Stream a running job's updates (status, seed, 4 audios, 4 rolls, 4 MIDI files, results): the old
        results cleared, then its progress per variation with the time left (and live sketches, when `sketch`
        draws them) until it ends; Stop and the end of the page stop it. An error is one message; the caller
        then yields the results."""
        key = _session_key(request)
        with self._lock:
            self._jobs[key] = job
        try:
            yield (f"{doing}...", gr.skip(), *[None] * MAX_VARIATIONS, *waiting, *[None] * MAX_VARIATIONS, [])
            last_stream = time.monotonic()
            while not job.done.wait(POLL_EVERY):
                rolls = [gr.skip()] * MAX_VARIATIONS
                if sketch is not None and time.monotonic() - last_stream >= STREAM_EVERY:
                    last_stream = time.monotonic()
                    rolls = sketch()
                yield (f"{doing}: {job.progress().text(job.seconds())}. Stop keeps what is made.",
                       gr.skip(), *[gr.skip()] * MAX_VARIATIONS, *rolls, *[gr.skip()] * MAX_VARIATIONS, gr.skip())
        finally:
            job.stop.set()  # the client went away (or cancelled): end the worker's sampling too
            with self._lock:
                if self._jobs.get(key) is job:
                    del self._jobs[key]
        if job.error is not None:
            raise gr.Error(job.error)
        if job.stopped or job.timed_out:  # say so at once; rendering the partial results takes a moment
            yield (f"{self._why(job)} after {job.seconds():.1f} s ({job.progress().summary()}): preparing what was "
                   "made...", gr.skip(),
                   *[gr.skip()] * (3 * MAX_VARIATIONS), gr.skip())

    def _why(self, job: GenerationJob) -> str:
        return "Stopped" if job.stopped else f"Time limit ({self.config.time_limit:g} s) reached"

    def _sketches(self, job: GenerationJob, score: symusic.Score | None, full: bool, size: RollSize,
                  count: int) -> list:
        boundary = int(score.end()) if score is not None else 0
        start = 0 if full or not boundary else window_start(score, boundary)
        palette = prompt_palette(score)
        rolls: list = [gr.skip()] * MAX_VARIATIONS
        for index, sketch in enumerate(job.sketches()[:count]):
            # a prompt ending in a long note leaves its last bars without onsets: nothing to draw there yet
            if sketch is not None and window(sketch, start).note_num():
                rolls[index] = roll_html(window(sketch, start), f"result-audio-{index + 1}", size=size,
                                         boundary_tick=boundary - start if boundary else None,
                                         title=None, keys=track_keys(sketch), palette=palette,
                                         marks=bar_range.marks(sketch, start=start),
                                         note="Live sketch: the final roll and audio come when it is done.")
        return rolls

    def finish(self, job: GenerationJob, base: str, steps: int, full: bool, size: RollSize,
                edits: Sequence[str] = (), bars: tuple[int, int] | None = None) -> tuple:
        """The final update: rendered results and one record per variation (what 'Continue this one' and
        the whole-piece toggle read). `bars`: the results regenerate these bars instead of continuing."""
        results = job.results
        seed = results[0].seed if results else None
        named = f"{base}-bars-{bars[0]}-{bars[1]}" if bars else base
        palette = prompt_palette(job.prompt)
        partial = job.stopped or job.timed_out
        records = [{"midi": str(write_midi(r.score, self.config.files, f"{named}-variation-{i + 1}.mid")),
                    "boundary": int(r.boundary_tick), "seed": r.seed, "base": base, "steps": steps,
                    "partial": partial, "style": job.request.style, "density": job.request.density,
                    "pitch_range": job.request.pitch_range,
                    "count": len(results), "notes": r.continuation.note_num(), "palette": palette,
                    "edits": [*edits, *([edit_name(*bars)] if bars else [])],
                    **({"bars": list(bars), "span": [int(t) for t in r.span]} if bars and r.span else {})}
                   for i, r in enumerate(results)]
        views = self.views(full, records)
        seconds = job.seconds()
        if partial:
            status = self._stopped(job, records, seconds, seed)
        else:
            notes = ", ".join(str(r["notes"]) for r in records)
            of = f" of {edit_name(*bars, words=True)}" if bars else ""
            status = (f"Done: {len(results)} variation(s){of} in {seconds:.1f} s, seed {seed}, "
                      f"new notes: {notes}.")
        midis = [r["midi"] if has_music(r) else None for r in records] + [None] * (MAX_VARIATIONS - len(records))
        return (status, seed, *views[:MAX_VARIATIONS], *views[MAX_VARIATIONS:], *midis, records)

    def _stopped(self, job: GenerationJob, records: list[dict], seconds: float, seed: int | None) -> str:
        """Stopped (or out of time): how far each variation got, and how many have new notes to keep."""
        empty = [str(i + 1) for i, r in enumerate(records) if not has_music(r)]
        head = f"{self._why(job)} after {seconds:.1f} s ({job.progress().summary()})"
        if len(empty) == len(records):
            return f"{head}: no new notes yet, so nothing is kept."
        kept = f"{head}: {plural(len(records) - len(empty), 'partial variation')} kept, seed {seed}"
        if not empty:
            return kept + "."
        return (f"{kept}; variation{'s' if len(empty) > 1 else ''} {' and '.join(empty)} had no new notes yet, "
                "so there is nothing to keep or continue there.")
