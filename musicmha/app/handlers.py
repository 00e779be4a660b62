"""The app's event handlers as plain functions: UI values in, UI values out, library errors turned into
one-line messages. No model logic here: generation is `MusicGenerator.continue_midi` (run by job.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import symusic

from musicmha.errors import MusicmhaError
from musicmha.generation.request import GenerationRequest
from musicmha.data.midi_io import MAX_BYTES, load_midi
from musicmha.render.audio import music_end_seconds
from musicmha.render.pianoroll import track_keys
from musicmha.app import history
from musicmha.app.bars import edit_name
from musicmha.app.history import new_session  # noqa: F401 (re-exported for the UI and tests)
from musicmha.app.job import GenerationJob, describe
from musicmha.app.service import ModelCache, TempFiles, View, render_view, write_midi, write_wav
from musicmha.app.settings import MAX_VARIATIONS, page_request
from musicmha.app.views import RollSize, placeholder_html, roll_html, roll_size, window, window_start

logger = logging.getLogger(__name__)

STREAM_EVERY = 1.5  # seconds between live piano roll updates while generating
POLL_EVERY = 0.25  # seconds between status updates (and checks for the end of the run)


@dataclass
class AppConfig:
    checkpoints: list[Path]
    checkpoint: Path | None
    examples: dict[str, Path]
    max_upload_bytes: int = MAX_BYTES
    time_limit: float = 300.0  # seconds one generation may run; it then stops and keeps what it made
    cache: ModelCache = field(default_factory=ModelCache)
    files: TempFiles = field(default_factory=TempFiles)


KEEP_LABEL, CONTINUE_LABEL = "Keep this one", "Continue this one"


def button_labels(records: list[dict] | None) -> list[gr.Button]:
    """'Keep this one' under regenerated bars, 'Continue this one' under continuations; active under a result."""
    records = records or []
    return [gr.Button(value=KEEP_LABEL if i < len(records) and records[i].get("bars") else CONTINUE_LABEL,
                      interactive=i < len(records)) for i in range(MAX_VARIATIONS)]


def prompt_palette(score: symusic.Score | None) -> list | None:
    """The prompt's track keys: every roll of its results colors each track as the prompt's roll does
    (None: no prompt, each roll its own)."""
    return None if score is None else [key for key in track_keys(score) if key is not None]


def _session_key(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Handlers:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._jobs: dict[str, GenerationJob] = {}  # the running generation of each browser session
        self._lock = threading.Lock()

    # --- prompt -----------------------------------------------------------------------------------
    def read_prompt(self, path: str | None) -> tuple[bytes | None, symusic.Score | None]:
        """The file's bytes and score, checked (size, MIDI structure, notes) by `load_midi`."""
        if not path:
            return None, None
        try:
            score = load_midi(path, max_bytes=self.config.max_upload_bytes)
            return Path(path).read_bytes(), score
        except MusicmhaError as error:
            raise gr.Error(f"{Path(path).name}: {error}") from None
        except OSError as error:
            raise gr.Error(f"cannot read the file: {error.strerror or error}") from None

    def show(self, session: dict) -> tuple:
        """The prompt outputs for the session's current prompt: its file (what Generate reads), audio,
        piano roll, one info line, the history, undo/redo availability, and the session itself."""
        entry = history.current(session)
        undo, redo = gr.Button(interactive=history.can_undo(session)), gr.Button(interactive=history.can_redo(session))
        if entry["data"] is None:
            return (None, None, placeholder_html("No prompt: the model starts from nothing."),
                    "No prompt: the model starts from nothing.", history.markdown(session), undo, redo, session)
        path = self.config.files.path(history.file_name(entry))
        path.write_bytes(entry["data"])
        score = load_midi(entry["data"], max_bytes=max(self.config.max_upload_bytes, len(entry["data"])))
        try:
            view = render_view(score, "prompt-audio", title="prompt")
        except MusicmhaError as error:  # e.g. a missing SoundFont named in $MUSICMHA_SOUNDFONT
            raise gr.Error(f"cannot render the prompt: {error}") from None
        came = history.origin(entry, kept=True)
        info = (f"**{history.name_of(entry)}**{f' ({came})' if came else ''}: {plural(score.note_num(), 'note')}, "
                f"{plural(len(score.tracks), 'track')}, {music_end_seconds(score):.1f} s.")
        audio = str(write_wav(view.audio, self.config.files, f"{path.stem}.wav"))
        return str(path), audio, view.html, info, history.markdown(session), undo, redo, session

    def upload(self, path: str | None, session: dict, results: list[dict] | None = None) -> tuple:
        """A dropped file becomes the prompt; a refused one leaves the previous prompt as it was, one message
        says why, and the upload box empties itself so the next file can be dropped at once. `results` (here
        and in every prompt change): what the page shows, kept with the prompt it leaves (`history.remember`)."""
        try:
            data, _ = self.read_prompt(path)
        except gr.Error as error:
            gr.Warning(error.message)
            return (None, *[gr.skip()] * 8)
        if data is None:
            return (None, *[gr.skip()] * 8)
        return (None, *self._change(session, results, data, Path(path).stem))

    def _change(self, session: dict, results: list[dict] | None, *prompt: Any, **named: Any) -> tuple:
        """Show a new prompt pushed after the current one, which keeps the results shown with it; the
        prompt outputs left as they are when it is the current one already."""
        kept = history.remember(session, results)
        pushed = history.push(kept, *prompt, **named)
        if pushed is kept:
            return tuple(gr.skip() for _ in range(8))
        return self.show(pushed)

    def pick_example(self, name: str | None, session: dict, results: list[dict] | None = None) -> tuple:
        if not name:
            return tuple(gr.skip() for _ in range(8))
        if name not in self.config.examples:
            raise gr.Error(f"unknown example {name!r}")
        return self._change(session, results, self.config.examples[name].read_bytes(), name, example=name)

    def start_from_nothing(self, session: dict, results: list[dict] | None = None) -> tuple:
        return self._change(session, results, None, None)

    def undo(self, session: dict, results: list[dict] | None = None) -> tuple:
        if not history.can_undo(session):
            gr.Info("This is the first prompt: nothing to undo.")
            return tuple(gr.skip() for _ in range(8))
        return self.show(history.move(history.remember(session, results), -1))

    def redo(self, session: dict, results: list[dict] | None = None) -> tuple:
        if not history.can_redo(session):
            gr.Info("Nothing to redo.")
            return tuple(gr.skip() for _ in range(8))
        return self.show(history.move(history.remember(session, results), +1))

    def continue_from(self, index: int, results: list[dict] | None, session: dict) -> tuple:
        if not results or index >= len(results):
            raise gr.Error("no result to continue from yet")
        result = results[index]
        data = Path(result["midi"]).read_bytes()
        continued = 0 if result.get("bars") else 1  # a regenerated range is kept as an edit, not a continuation
        edits = result.get("edits") or []
        pushed = history.push(history.remember(session, results), data, result["base"], result["steps"] + continued,
                              edits, variation=index + 1, seed=result.get("seed"), kept=bool(result.get("bars")))
        if result.get("bars") and pushed is not session:  # kept bars: the range stays chosen on the new prompt
            pushed["entries"][-1]["range"] = list(result["bars"])
        return self.show(pushed)

    def restore(self, prompt: str | None, session: dict, shown_for: str | None, full_view: bool | None = False
                ) -> tuple:
        """After a prompt change: what belongs to the prompt now shown, instead of the last one's: the example
        menu (its name, or empty), and the results it had when it was left (history.remember; none: the
        results, their status and slots cleared). Returns (example, status, 4 audios, 4 rolls, 4 MIDI files,
        results, 4 slots, 4 result buttons, shown_for); `shown_for` is the prompt file this was last done
        for, so a refused upload (the prompt unchanged) changes nothing."""
        if prompt == shown_for:
            return tuple(gr.skip() for _ in range(4 * MAX_VARIATIONS + 5))
        entry = history.current(session)
        records = [dict(r) for r in entry.get("results") or []]
        if not all(Path(r["midi"]).is_file() for r in records):  # swept with the app's old files
            records = []
        views = self.views(bool(full_view), records) if records else [None] * MAX_VARIATIONS + [""] * MAX_VARIATIONS
        status = (f"Earlier results of this prompt: {plural(len(records), 'variation')}, seed {records[0]['seed']}."
                  if records else "")
        midis = [r["midi"] for r in records] + [None] * (MAX_VARIATIONS - len(records))
        slots = [gr.Column(visible=i == 0 or i < len(records)) for i in range(MAX_VARIATIONS)]
        audios = [gr.Audio(value=audio, playback_position=0) for audio in views[:MAX_VARIATIONS]]  # at 0:00
        return (entry.get("example"), status, *audios, *views[MAX_VARIATIONS:], *midis, records, *slots,
                *button_labels(records), prompt)

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
        `settings`: the page's values by name (settings.CONTINUE_SETTINGS)."""
        generator, score, asked = self.prepare(prompt, settings)
        count, full = asked.num_samples, bool(full_view)
        base, steps, edits = self.lineage(prompt, session)
        size = roll_size(count)
        job = GenerationJob(generator, score, asked, self.config.time_limit)
        what = f"{plural(count, 'variation')} of {describe(asked)}"
        waiting = [placeholder_html(f"Variation {i + 1}: waiting for its first notes...") if i < count else ""
                   for i in range(MAX_VARIATIONS)]
        progress = (lambda: f"bar {job.bars()}") if asked.bars else (lambda: f"{job.steps} tokens")
        yield from self.follow(job, request, f"Generating {what}", waiting, progress,
                               lambda: self._sketches(job, score, full, size, count))
        yield self.finish(job, base, steps, full, size, edits)

    def lineage(self, prompt: str | None, session: dict | None) -> tuple[str, int, list[str]]:
        """What the results are named after: the current prompt's piece, its continuations and edits."""
        entry = history.current(session) if session else None
        if entry and entry["data"] is not None:
            return entry["base"], entry["steps"], list(entry.get("edits") or [])
        return (Path(prompt).stem if prompt else "new piece"), 0, []

    def follow(self, job: GenerationJob, request: gr.Request | None, doing: str, waiting: list[str],
               progress, sketch=None) -> Iterator[tuple]:
        """Stream a running job's updates (status, seed, 4 audios, 4 rolls, 4 MIDI files, results): the old
        results cleared, then progress (and live sketches, when `sketch` draws them) until it ends; Stop and
        the end of the page stop it. An error is one message; the caller then yields the results."""
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
                yield (f"{doing}: {progress()} so far ({job.seconds():.0f} s). Stop keeps what is made.",
                       gr.skip(), *[gr.skip()] * MAX_VARIATIONS, *rolls, *[gr.skip()] * MAX_VARIATIONS, gr.skip())
        finally:
            job.stop.set()  # the client went away (or cancelled): end the worker's sampling too
            with self._lock:
                if self._jobs.get(key) is job:
                    del self._jobs[key]
        if job.error is not None:
            raise gr.Error(job.error)
        if job.stopped or job.timed_out:  # say so at once; rendering the partial results takes a moment
            yield (f"{self._why(job)} after {plural(job.bars(), 'bar')}: preparing what was made...", gr.skip(),
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
        records = [{"midi": str(write_midi(r.score, self.config.files, f"{named}-variation-{i + 1}.mid")),
                    "boundary": int(r.boundary_tick), "seed": r.seed, "base": base, "steps": steps,
                    "count": len(results), "notes": r.continuation.note_num(), "palette": palette,
                    "edits": [*edits, *([edit_name(*bars)] if bars else [])],
                    **({"bars": list(bars), "span": [int(t) for t in r.span]} if bars and r.span else {})}
                   for i, r in enumerate(results)]
        views = self.views(full, records)
        seconds = job.seconds()
        if job.stopped or job.timed_out:
            status = (f"{self._why(job)} after {plural(job.bars(), 'bar')} ({seconds:.1f} s): "
                      f"{plural(len(results), 'partial variation')} kept, seed {seed}.")
        else:
            notes = ", ".join(str(r["notes"]) for r in records)
            of = f" of {edit_name(*bars, words=True)}" if bars else ""
            status = (f"Done: {len(results)} variation(s){of} in {seconds:.1f} s, seed {seed}, "
                      f"new notes: {notes}.")
        midis = [r["midi"] for r in records] + [None] * (MAX_VARIATIONS - len(records))
        return (status, seed, *views[:MAX_VARIATIONS], *views[MAX_VARIATIONS:], *midis, records)

    def _view(self, i: int, record: dict, full: bool, size: RollSize) -> View:
        score = symusic.Score(record["midi"])  # ours: may be empty after an early Stop
        bars = tuple(record["bars"]) if record.get("bars") else None
        note = (f"Variation {i + 1} of {record['count']}, seed {record['seed']}: "
                f"{'regenerate' if bars else 'generate'} with this seed to make it again (as variation 1).")
        if not score.note_num():
            return View(None, placeholder_html(f"Variation {i + 1}: no notes yet."), 0)
        try:
            view = render_view(score, f"result-audio-{i + 1}", boundary_tick=record["boundary"] or None,
                               full=full, size=size, note=note, bars=bars, palette=record.get("palette"))
        except MusicmhaError as error:
            raise gr.Error(f"cannot render variation {i + 1}: {error}") from None
        # a WAV named like the MIDI ('bach_bwv66.6_chorale-variation-2.wav'): the player's download name
        name = f"{Path(record['midi']).stem}{'' if full else '-excerpt'}.wav"
        return View(str(write_wav(view.audio, self.config.files, name)), view.html, view.start_tick)

    def views(self, full: bool, records: list[dict] | None) -> list:
        """4 audios then 4 piano rolls for the results (the whole piece, or the prompt's last bars and then
        the continuation)."""
        records = records or []
        size = roll_size(len(records))
        # FluidSynth runs as a subprocess: the variations render side by side.
        with ThreadPoolExecutor(max(1, len(records))) as pool:
            shown: list[View | None] = list(pool.map(lambda i: self._view(i, records[i], full, size),
                                                     range(len(records))))
        shown += [None] * (MAX_VARIATIONS - len(shown))
        return [v.audio if v else None for v in shown] + [v.html if v else "" for v in shown]
