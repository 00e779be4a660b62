"""What the web app needs from the library, without gradio: a shared model cache, the checkpoint list,
one temporary folder for the files it hands out, and prompt/result rendering (audio, piano roll, MIDI).

Kept free of gradio so the handlers stay thin and these pieces can be tested and reused on their own.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
import time
import uuid
import wave
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

from musicmha import assets, checkpoint
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.errors import MusicmhaError
from musicmha.generation.music_generator import MusicGenerator
from musicmha.render.audio import music_end_seconds, render_audio
from musicmha.render.pianoroll import TrackKey, track_keys
from musicmha.app import bars as bar_range
from musicmha.app.views import BarMarks, RollSize, roll_html, seconds_at, window, window_start

logger = logging.getLogger(__name__)

SAMPLE_RATE = 32000  # enough for a preview and a third smaller than 44.1 kHz to send to the browser
MAX_AUDIO_SECONDS = 180.0  # the longest a player holds: a longer piece is heard from its last bars


def initial_checkpoint(explicit: str | Path | None) -> Path | None:
    """--checkpoint (a folder or a shipped model's name), else the library's default (env var or the shipped
    model); None when there is none, so the app can still start and say so instead of crashing. A named
    folder that does not exist is kept as given: loading it reports the error in the page."""
    try:
        return checkpoint.resolve(explicit).resolve()
    except MusicmhaError:
        return None if explicit is None else Path(explicit).resolve()


def list_examples(folder: Path | None = None) -> dict[str, Path]:
    """Bundled example prompts by display name (file stem)."""
    return assets.example_prompts(folder)


class ModelCache:
    """Generators loaded once and shared by all sessions, keyed by checkpoint folder (least recently used
    evicted beyond `size`), so switching checkpoints back and forth does not reload from disk."""

    def __init__(self, size: int = 2, device: str | None = None) -> None:
        self.size, self.device = size, device
        self._items: OrderedDict[Path, MusicGenerator] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, folder: str | Path) -> MusicGenerator:
        key = Path(folder).resolve()
        with self._lock:  # held while loading, so two sessions never load the same model twice
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            generator = MusicGenerator.from_pretrained(key, device=self.device)
            self._items[key] = generator
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return generator

    def peek(self, folder: str | Path) -> MusicGenerator | None:
        """The generator of `folder` when it is loaded already (None: not loaded; nothing is loaded here)."""
        with self._lock:
            return self._items.get(Path(folder).resolve())


def has_styles(folder: Path | None, cache: ModelCache | None = None) -> bool:
    """Whether the checkpoint in `folder` was trained with style and density tokens (its tokenizer's
    `condition_tokens`): the loaded generator's tokenizer when the cache holds it, else its tokenizer file
    (a missing or unreadable one: no styles; loading the model says what is wrong)."""
    if folder is None:
        return False
    generator = cache.peek(folder) if cache is not None else None
    try:
        tokenizer = generator.tokenizer if generator is not None else MusicTokenizer.load(folder)
    except MusicmhaError:
        return False
    return tokenizer.condition_tokens is not None


class TempFiles:
    """One folder for every file the app writes; files older than `max_age` seconds are swept on each new
    file, and the whole folder goes when the process exits."""

    def __init__(self, root: str | Path | None = None, max_age: float = 3600.0) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="musicmha-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age = max_age
        self._last_sweep = 0.0
        if root is None:
            atexit.register(shutil.rmtree, self.root, True)

    def path(self, name: str) -> Path:
        """A fresh path ending in `name` (a unique subfolder keeps the user-facing file name readable)."""
        self.sweep()
        folder = self.root / uuid.uuid4().hex[:12]
        folder.mkdir()
        return folder / name

    def sweep(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        if now - self._last_sweep < min(60.0, self.max_age / 2):
            return 0
        self._last_sweep, removed = now, 0
        for entry in self.root.iterdir():
            try:
                if now - entry.stat().st_mtime > self.max_age:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                    removed += 1
            except OSError:  # another request may be sweeping too
                continue
        if removed:
            logger.info("removed %d old app files from %s", removed, self.root)
        return removed


@dataclass
class View:
    """What the page shows for one score: audio for gr.Audio and the piano roll (HTML with a playhead),
    both from the same window of the score."""
    audio: tuple[int, np.ndarray]
    html: str
    start_tick: int  # where the window starts in the score (0: the whole piece)
    heard: str = ""  # when the player starts later than the roll (a long piece): one sentence saying so


def audible_start(score: symusic.Score, limit: float | None = None) -> tuple[int, int]:
    """(bar number, tick) where the player starts: bar 1 when the whole piece fits in `limit` seconds (default
    MAX_AUDIO_SECONDS), else the earliest bar from which the rest does, so a long piece is heard up to its end,
    where the model continues, and not cut before it."""
    limit = MAX_AUDIO_SECONDS if limit is None else limit
    end = music_end_seconds(score)
    if end <= limit:
        return 1, 0
    lines = bar_range.bar_lines(score)[:-1]
    seconds = seconds_at(score, lines)
    for number, (tick, at) in enumerate(zip(lines, seconds), 1):
        if end - at <= limit:
            return number, tick
    return len(lines), lines[-1]  # one bar longer than the limit: its start (render_audio cuts the rest)


def heard_note(score: symusic.Score, bar: int, tick: int) -> str:
    """One sentence for a player that starts at `bar` (tick `tick`) of `score` (empty when it is bar 1)."""
    if tick <= 0:
        return ""
    end, at = music_end_seconds(score), seconds_at(score, [tick])[0]
    return (f"The player plays the last {_clock(end - at)} (from bar {bar}, at {_clock(at)}), up to the end: "
            f"the whole piece is {_clock(end)}, longer than the {_clock(MAX_AUDIO_SECONDS)} a player holds; "
            "the roll and the MIDI file are the whole piece.")


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def render_view(score: symusic.Score, audio_id: str, *, boundary_tick: int | None = None, full: bool = True,
                size: RollSize = RollSize(1000, 340), title: str | None = None, note: str = "",
                bars: tuple[int, int] | None = None, palette: Sequence[TrackKey] | None = None,
                keys: Sequence[TrackKey | None] | None = None) -> View:
    """Audio and piano roll of `score`: the whole piece, or (full=False) the prompt's last bars and then the
    continuation. Both start at the same tick, so the audio's second 0 is the roll's left edge, except for a
    piece longer than a player holds: it is heard from its last bars (`audible_start`), the roll shades what
    is not heard and the caption says so. The roll numbers the bars; `bars` (a regenerated range
    first..last) also shades the range and (full=False) shows it with two bars either side. `palette`: the
    prompt's track keys, so each track has the color it has in the prompt's roll (default: the score's own);
    `keys`: the score's own track keys to color by (default `track_keys(score)`)."""
    stop = None
    if bars is not None:
        start, stop = (0, None) if full else bar_range.focus(score, *bars)
    else:
        start = 0 if full or not boundary_tick else window_start(score, boundary_tick)
    shown = window(score, start, stop)
    if not shown.note_num():  # nothing starts in the window (a long last note, no new notes): the whole piece
        start, stop, shown = 0, None, score
    marks = bar_range.marks(score, *(bars or (None, None)), start=start, stop=stop)
    boundary = boundary_tick - start if boundary_tick and bars is None else None
    bar, heard = audible_start(shown)
    heard_from = heard_note(shown, bar_number(marks, heard), heard)
    audio, rate = render_audio(window(shown, heard), sample_rate=SAMPLE_RATE, max_seconds=MAX_AUDIO_SECONDS)
    html = roll_html(shown, audio_id, boundary_tick=boundary, size=size, title=title,
                     note=" ".join(part for part in (note, heard_from) if part), marks=marks,
                     keys=track_keys(score) if keys is None else keys, palette=palette, heard_tick=heard)
    return View((rate, audio), html, start, heard_from)


def bar_number(marks: BarMarks, tick: int) -> int:
    """The bar number (as the piece counts it) of the bar starting at `tick` of a window's `marks`."""
    return next((number for number, at in marks.bars if at == tick), 1)


def write_wav(audio: tuple[int, np.ndarray], files: TempFiles, name: str) -> Path:
    """A rendered (rate, int16 samples) as a WAV file named `name`: the player's download is called after the
    piece and variation, not gradio's 'audio.wav'."""
    rate, samples = audio
    samples = np.asarray(samples, dtype=np.int16)
    path = files.path(name)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(np.ascontiguousarray(samples).astype("<i2").tobytes())
    return path


def write_midi(score: symusic.Score, files: TempFiles, name: str) -> Path:
    path = files.path(name)
    path.write_bytes(score.dumps_midi())
    return path
