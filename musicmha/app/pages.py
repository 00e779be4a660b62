"""The prompt and the results as the page shows them, without running anything: the app's config, reading a
dropped file, every prompt change through the session history (upload, example, from nothing, undo, redo,
continue from a result, results brought back with a prompt), and the rendered result cards. `Handlers`
(handlers.py) adds running generations on top of this."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import symusic

from musicmha.app import history
from musicmha.app.service import ModelCache, TempFiles, View, render_view, write_wav
from musicmha.app.settings import MAX_VARIATIONS, asked_words
from musicmha.app.views import RollSize, placeholder_html, roll_size
from musicmha.data.midi_io import MAX_BYTES, load_midi
from musicmha.errors import MusicmhaError
from musicmha.render.audio import music_end_seconds
from musicmha.render.pianoroll import track_keys


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


def is_edit(record: dict) -> bool:
    """A result that edits the prompt (regenerated bars, an added part): kept, not continued."""
    return bool(record.get("bars") or record.get("part"))


def has_music(record: dict) -> bool:
    """A result worth keeping: it has new notes, or it was not stopped (a finished one may be silent)."""
    return bool(record.get("notes")) or not record.get("partial")


def button_labels(records: list[dict] | None) -> list[gr.Button]:
    """'Keep this one' under regenerated bars and added parts, 'Continue this one' under continuations; active
    under a result
    (not under one stopped before its first new notes: there is nothing to keep or continue)."""
    records = records or []
    return [gr.Button(value=KEEP_LABEL if i < len(records) and is_edit(records[i]) else CONTINUE_LABEL,
                      interactive=i < len(records) and has_music(records[i])) for i in range(MAX_VARIATIONS)]


def seed_buttons(records: list[dict] | None) -> list[gr.Button]:
    """'Use this seed' is active under each result with music in it."""
    records = records or []
    return [gr.Button(interactive=i < len(records) and has_music(records[i])) for i in range(MAX_VARIATIONS)]


def prompt_palette(score: symusic.Score | None) -> list | None:
    """The prompt's track keys: every roll of its results colors each track as the prompt's roll does
    (None: no prompt, each roll its own)."""
    return None if score is None else [key for key in track_keys(score) if key is not None]


def part_keys(score: symusic.Score, record: dict) -> list | None:
    """The colour keys of a result's tracks (None: the score's own). An added kit where the prompt has drums
    too is coloured as a pitched track, so it gets a colour of its own, not the drums' grey."""
    part = record.get("part")
    keys = track_keys(score)
    if not part or not part["drum"] or part["index"] >= len(keys) or keys[part["index"]] is None:
        return None
    if not any(key is not None and key[2] for key in keys[:part["index"]]):
        return None
    name, program, _, number = keys[part["index"]]
    keys[part["index"]] = (name, program, False, number)
    return keys


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class PromptViews:
    """The prompt side of the page and the result cards, over the app's config."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config

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
                f"{plural(len(score.tracks), 'track')}, {music_end_seconds(score):.1f} s."
                + (f" {view.heard}" if view.heard else ""))
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
        if not has_music(result):
            raise gr.Error(f"variation {index + 1} was stopped before its first new notes: nothing to continue")
        data = Path(result["midi"]).read_bytes()
        edit = is_edit(result)  # regenerated bars and an added part are kept as edits, not continuations
        edits = result.get("edits") or []
        pushed = history.push(history.remember(session, results), data, result["base"], result["steps"] + (not edit),
                              edits, variation=index + 1, seed=result.get("seed"), kept=edit)
        if result.get("bars") and pushed is not session:  # kept bars: the range stays chosen on the new prompt
            pushed["entries"][-1]["range"] = list(result["bars"])
        return self.show(pushed)

    def use_seed(self, index: int, results: list[dict] | None) -> tuple:
        """'Use this seed' under variation `index + 1`: (seed, random seed off, 1 variation, its bar range or
        skip, a status line saying what makes it again)."""
        if not results or index >= len(results):
            raise gr.Error("no result yet")
        record = results[index]
        bars, part = record.get("bars"), record.get("part")
        if part:  # the same bars again for a part over a range (the whole piece: the range is not read)
            bars = None if part["whole"] else part["bars"]
        again = (f"'Add a part' ({part['word']})" if part else
                 f"'Regenerate these bars' ({bars[0]} to {bars[1]})" if bars else "'Generate'")
        status = (f"Seed {record['seed']} (variation {index + 1}'s) is set, with random seed off and 1 variation: "
                  f"{again} with the same settings makes it again.")
        first, last = (bars[0], bars[1]) if bars else (gr.skip(), gr.skip())
        return record["seed"], False, 1, first, last, status

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
        midis = [r["midi"] if has_music(r) else None for r in records] + [None] * (MAX_VARIATIONS - len(records))
        slots = [gr.Column(visible=i == 0 or i < len(records)) for i in range(MAX_VARIATIONS)]
        audios = [gr.Audio(value=audio, playback_position=0) for audio in views[:MAX_VARIATIONS]]  # at 0:00
        return (entry.get("example"), status, *audios, *views[MAX_VARIATIONS:], *midis, records, *slots,
                *button_labels(records), prompt)

    def _view(self, i: int, record: dict, full: bool, size: RollSize) -> View:
        score = symusic.Score(record["midi"])  # ours: may be empty after an early Stop
        bars = tuple(record["bars"]) if record.get("bars") else None
        part = record.get("part")
        if part:  # an added part: the whole piece, or its bars shaded (shown with 2 bars either side)
            bars = None if part["whole"] else tuple(part["bars"])
        asked = asked_words(record.get("style"), record.get("density"), record.get("pitch_range"))  # what was asked
        action = "add a part" if part else "regenerate" if bars else "generate"
        note = (f"Variation {i + 1} of {record['count']}, seed {record['seed']}{', ' + asked if asked else ''}: "
                f"{action} with this seed to make it again (as variation 1)."
                + (f" The new part: {part['name']}, heard with the other parts here and alone below." if part
                   else ""))
        if not has_music(record):
            return View(None, placeholder_html(f"Variation {i + 1}: stopped before its first new notes, so there "
                                               "is nothing to hear, keep or continue."), 0)
        if not score.note_num():
            return View(None, placeholder_html(f"Variation {i + 1}: no notes yet."), 0)
        try:
            view = render_view(score, f"result-audio-{i + 1}", boundary_tick=record["boundary"] or None,
                               full=full, size=size, note=note, bars=bars, palette=record.get("palette"),
                               keys=part_keys(score, record))
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
