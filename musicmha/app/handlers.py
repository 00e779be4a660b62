"""The app's event handlers as plain functions: UI values in, UI values out, library errors turned into
gr.Error (one line, no traceback). No model logic here: generation is `MusicGenerator.continue_midi`."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import symusic

from ..errors import MusicmhaError
from ..midi_io import MAX_BYTES, load_midi
from ..render import music_end_seconds
from .service import ModelCache, Rendered, TempFiles, render_score

logger = logging.getLogger(__name__)

MAX_VARIATIONS = 4
LIMITS = {"bars": 32, "seconds": 60, "tokens": 2048}  # longest generation a request may ask for
MAX_PROMPT_TOKENS = 2048
HISTORY_STEPS = 20  # undo depth per session (prompts are small: kept as MIDI bytes)
STREAM_EVERY = 1.5  # seconds between live piano roll updates while generating
POLL_EVERY = 0.25  # seconds between progress reports


class Stopped(Exception):
    """Raised from the token callback to end a generation that was stopped or ran out of time."""


@dataclass
class AppConfig:
    checkpoints: list[Path]
    checkpoint: Path | None
    examples: dict[str, Path]
    max_upload_bytes: int = MAX_BYTES
    time_limit: float = 300.0  # seconds one generation may run
    cache: ModelCache = field(default_factory=ModelCache)
    files: TempFiles = field(default_factory=TempFiles)


def new_session() -> dict[str, Any]:
    """Per-session state: the current prompt's bytes (None: start from nothing) and the earlier ones."""
    return {"current": None, "history": []}


def generation_kwargs(unit: str, length: float, temperature: float, top_k: float | None, top_p: float | None,
                      seed: float | None, random_seed: bool, variations: float,
                      prompt_tokens: float | None) -> dict[str, Any]:
    """UI values -> keyword arguments of `continue_midi`, checked against the app's limits (API callers can
    send anything). 0 means "off" for top-k and prompt tokens; top-p 1.0 means off."""
    if unit not in LIMITS:
        raise gr.Error(f"length unit must be one of {', '.join(LIMITS)}, not {unit!r}")
    if not length or not 0 < length <= LIMITS[unit]:
        raise gr.Error(f"length must be between 1 and {LIMITS[unit]} {unit}, not {length}")
    if not 1 <= int(variations or 0) <= MAX_VARIATIONS:
        raise gr.Error(f"variations must be between 1 and {MAX_VARIATIONS}, not {variations}")
    if temperature is None or not 0 < temperature <= 5:
        raise gr.Error(f"temperature must be in (0, 5], not {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise gr.Error(f"top-p must be in (0, 1], not {top_p}")
    if prompt_tokens is not None and not 0 <= prompt_tokens <= MAX_PROMPT_TOKENS:
        raise gr.Error(f"prompt tokens must be between 0 (automatic) and {MAX_PROMPT_TOKENS}")
    if not random_seed and (seed is None or not 0 <= seed < 2**31):
        raise gr.Error("seed must be a whole number from 0 to 2147483647 (or tick 'random seed')")
    length_arg = {"bars": ("bars", int(length)), "seconds": ("seconds", float(length)),
                  "tokens": ("max_new_tokens", int(length))}[unit]
    return {length_arg[0]: length_arg[1], "temperature": float(temperature),
            "top_k": int(top_k) if top_k else None, "top_p": float(top_p) if top_p and top_p < 1 else None,
            "seed": None if random_seed else int(seed), "num_samples": int(variations),
            "prompt_tokens": int(prompt_tokens) if prompt_tokens else None}


class Handlers:
    def __init__(self, config: AppConfig) -> None:
        self.config = config

    # --- prompt -----------------------------------------------------------------------------------
    def read_prompt(self, path: str | None) -> tuple[bytes | None, symusic.Score | None]:
        """The uploaded file's bytes and score, checked (size, MIDI structure, notes) by `load_midi`."""
        if not path:
            return None, None
        try:
            score = load_midi(path, max_bytes=self.config.max_upload_bytes)
            return Path(path).read_bytes(), score
        except MusicmhaError as error:
            raise gr.Error(f"{Path(path).name}: {error}") from None
        except OSError as error:
            raise gr.Error(f"cannot read the uploaded file: {error.strerror or error}") from None

    def pick_example(self, name: str | None) -> str | None:
        """A copy of a bundled example (the page may only be given files from the app's own folder)."""
        if not name:
            return gr.skip()
        if name not in self.config.examples:
            raise gr.Error(f"unknown example {name!r}")
        target = self.config.files.path(f"{name}.mid")
        shutil.copyfile(self.config.examples[name], target)
        return str(target)

    def clear_prompt(self) -> tuple[None, None, str]:
        """Runs first on every prompt change, so a bad upload never leaves the previous preview showing."""
        return None, None, "Reading the prompt..."

    def render(self, score: symusic.Score, name: str, **kwargs: Any) -> Rendered:
        try:
            return render_score(score, self.config.files, name, **kwargs)
        except MusicmhaError as error:  # e.g. a missing SoundFont named in $MUSICMHA_SOUNDFONT
            raise gr.Error(f"cannot render {name}: {error}") from None

    def show_prompt(self, path: str | None, session: dict) -> tuple[Any, Any, str, dict]:
        """Preview the prompt (audio + piano roll) and record the change in the session history."""
        data, score = self.read_prompt(path)
        if data != session["current"]:
            session = {"current": data, "history": [*session["history"], session["current"]][-HISTORY_STEPS:]}
        if data is None:
            return None, None, "No prompt: the model starts from nothing.", session
        shown = self.render(score, "prompt", title="prompt")
        info = (f"Prompt: {score.note_num()} notes, {len(score.tracks)} track(s), "
                f"{music_end_seconds(score):.1f} s.")
        return shown.audio, str(shown.image), info, session

    def undo(self, session: dict) -> tuple[Any, dict]:
        if not session["history"]:
            gr.Warning("Nothing to undo.")
            return gr.skip(), session
        previous = session["history"][-1]
        session = {"current": previous, "history": session["history"][:-1]}
        if previous is None:
            return None, session
        target = self.config.files.path("prompt.mid")
        target.write_bytes(previous)
        return str(target), session

    def continue_from(self, result_path: str | None) -> str:
        if not result_path:
            raise gr.Error("no result to continue from yet")
        target = self.config.files.path("prompt.mid")
        shutil.copyfile(result_path, target)
        return str(target)

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

    def generate(self, prompt: str | None, unit: str, length: float, temperature: float, top_k: float,
                 top_p: float, seed: float, random_seed: bool, variations: float, prompt_tokens: float,
                 checkpoint: str | None, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Stream (status, seed used, 4 audios, 4 piano rolls, 4 MIDI files): live piano rolls while the
        model samples in a worker thread, then the rendered results."""
        kwargs = generation_kwargs(unit, length, temperature, top_k, top_p, seed, random_seed, variations,
                                   prompt_tokens)
        _, score = self.read_prompt(prompt)
        try:
            generator = self.config.cache.get(self.checkpoint_folder(checkpoint))
        except MusicmhaError as error:
            raise gr.Error(str(error)) from None
        job = _Job(generator, score, kwargs, self.config.time_limit)
        progress((0, kwargs.get("max_new_tokens")), desc="generating", unit="tokens")
        last = time.monotonic()
        try:
            while not job.done.wait(POLL_EVERY):
                progress((job.steps, kwargs.get("max_new_tokens")), desc="generating", unit="tokens")
                if time.monotonic() - last >= STREAM_EVERY:
                    last = time.monotonic()
                    live = job.live_roll(self.config.files)
                    if live is not None:
                        yield (f"Generating: {job.steps} tokens so far...", gr.skip(), *[gr.skip()] * 4,
                               live, *[gr.skip()] * 7)
        finally:
            job.stop.set()  # the page's Stop button closes this generator: end the worker's sampling too
        if job.error is not None:
            raise gr.Error(job.error)
        progress(1.0, desc="rendering")
        shown: list[Rendered | None] = [self.render(r.score, f"variation-{i + 1}", boundary_tick=r.boundary_tick,
                                                    title=f"variation {i + 1}") for i, r in enumerate(job.results)]
        shown += [None] * (MAX_VARIATIONS - len(shown))
        used = job.results[0].seed
        notes = ", ".join(str(r.continuation.note_num()) for r in job.results)
        status = f"Done: {len(job.results)} variation(s), seed {used}, new notes: {notes}."
        yield (status, used, *[s.audio if s else None for s in shown], *[str(s.image) if s else None for s in shown],
               *[str(s.midi) if s else None for s in shown])


class _Job:
    """One `continue_midi` call in a worker thread, so the handler can report progress and stream."""

    def __init__(self, generator, prompt: symusic.Score | None, kwargs: dict, time_limit: float) -> None:
        self.generator, self.steps, self.tokens = generator, 0, []
        self.results, self.error = [], None
        self.stop, self.done = threading.Event(), threading.Event()
        self._deadline = time.monotonic() + time_limit
        threading.Thread(target=self._run, args=(prompt, kwargs), daemon=True, name="musicmha-generate").start()

    def _callback(self, step: int, tokens) -> None:
        self.steps = step + 1
        self.tokens.append(int(tokens[0]))
        if self.stop.is_set():
            raise Stopped("generation stopped")
        if time.monotonic() > self._deadline:
            raise Stopped("generation took too long; ask for fewer bars or variations")

    def _run(self, prompt: symusic.Score | None, kwargs: dict) -> None:
        try:
            self.results = self.generator.continue_midi(prompt, callback=self._callback, **kwargs)
        except (MusicmhaError, Stopped) as error:
            self.error = str(error)
        except Exception:  # a bug: keep the traceback in the log, show one line in the page
            logger.exception("generation failed")
            self.error = "generation failed (see the server log)"
        finally:
            self.done.set()

    def live_roll(self, files: TempFiles) -> str | None:
        """A rough piano roll of the first variation's new tokens so far (decoded from a bar start, so
        its timing is approximate; the final roll is exact)."""
        tok = self.generator.tokenizer
        ids = [tok.bos_id, tok.miditok.vocab.get("Bar_None", tok.bos_id), *self.tokens]
        try:
            score = tok.decode([i for i in ids if i not in (tok.eos_id, tok.pad_id)])
            if not score.note_num():
                return None
            from ..pianoroll import piano_roll_png

            path = files.path("live.png")
            piano_roll_png(score, path, width=1000, height=360, title=f"so far: {self.steps} tokens")
            return str(path)
        except Exception:  # a half-written note group may not decode; the next update will
            return None
