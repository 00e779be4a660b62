"""One generation in a worker thread, without gradio: it reports its progress (progress.py), can be
stopped (keeping what was made so far), and sketches every variation's notes so far for the live preview.
The same job regenerates a range of bars (`MusicGenerator.infill`) when given `infill_bars`, and adds a part
(`MusicGenerator.add_part`) when given `part` (its instrument and bars).

Stopping returns True from the sampling callback, which ends `generate` there; `continue_midi` then decodes
the partial rows like finished ones (the grammar keeps every prefix a valid piece).
"""

from __future__ import annotations

import logging
import threading
import time

import symusic

from musicmha.data.midi_io import piece_bar_lines
from musicmha.app.progress import Progress, measure
from musicmha.errors import MusicmhaError
from musicmha.generation.request import GenerationRequest
from musicmha.generation.result import merge_into_prompt, to_prompt_time

logger = logging.getLogger(__name__)


class GenerationJob:
    def __init__(self, generator, prompt: symusic.Score | None, request: GenerationRequest, time_limit: float,
                 infill_bars: tuple[int, int] | None = None, part: tuple[str, tuple[int, int]] | None = None
                 ) -> None:
        self.generator, self.prompt, self.request = generator, prompt, request
        self.infill_bars = infill_bars  # (first, last): regenerate these bars of the prompt instead of continuing
        self.part = part  # (instrument, (first, last)): add a part over these bars instead of continuing
        self.steps = 0
        self.rows: list[list[int]] = []  # new token ids per variation, as sampled
        self.results: list = []
        self.error: str | None = None
        self.stopped, self.timed_out = False, False
        self.stop, self.done = threading.Event(), threading.Event()
        self.started = time.monotonic()
        self._deadline = self.started + time_limit
        self.bar_id = generator.tokenizer.bar_id
        threading.Thread(target=self._run, daemon=True, name="musicmha-generate").start()

    def _callback(self, step: int, tokens) -> bool:
        """Record the new tokens; True ends the generation (Stop pressed, or the time limit reached)."""
        values = tokens.tolist()
        if not self.rows:
            self.rows = [[] for _ in values]
        for row, value in zip(self.rows, values):
            row.append(int(value))
        self.steps = step + 1
        if self.stop.is_set():
            self.stopped = True
            return True
        if time.monotonic() > self._deadline:
            self.timed_out = True
            return True
        return False

    def _run(self) -> None:
        try:
            if self.part is not None:
                instrument, bars = self.part
                self.results = self.generator.add_part(self.prompt, self.request, instrument=instrument, bars=bars,
                                                       callback=self._callback)
            elif self.infill_bars is not None:
                self.results = self.generator.infill(self.prompt, *self.infill_bars, self.request,
                                                     callback=self._callback)
            else:
                self.results = self.generator.continue_midi(self.prompt, self.request, callback=self._callback)
        except MusicmhaError as error:
            self.error = str(error)
        except Exception:  # a bug: keep the traceback in the log, show one line in the page
            logger.exception("generation failed")
            self.error = "generation failed (see the server log)"
        finally:
            self.done.set()

    def progress(self) -> Progress:
        """How far each variation is, in the request's words (bars, seconds or model steps), never past it."""
        if self.part is not None:  # each row reads the piece from the range's first bar line: bars as infill's
            return measure([row[1:] for row in list(self.rows)], self.bar_id, self.request, self.steps,
                           self.prompt, self.part[1])
        return measure(list(self.rows), self.bar_id, self.request, self.steps, self.prompt, self.infill_bars)

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def sketches(self) -> list[symusic.Score | None]:
        """Each variation so far, merged into the prompt on the prompt's time axis (None where nothing
        decodes yet). Approximate: the new tokens are decoded from the prompt's last bar line, in the prompt's
        tempo; the final results are exact."""
        return [self._sketch(list(row)) for row in list(self.rows)]

    def _sketch(self, new: list[int]) -> symusic.Score | None:
        tok = self.generator.tokenizer
        specials = {tok.eos_id, tok.pad_id, tok.bos_id}
        new = [i for i in new if i not in specials]
        ids = [tok.bos_id, *([self.bar_id] if self.prompt is not None and self.bar_id is not None else []), *new]
        try:
            fragment = tok.decode(ids)
        except Exception:  # a half-written note group may not decode yet; the next update will
            return None
        if not fragment.note_num():
            return None
        if self.prompt is None:
            return fragment
        return merge(self.prompt, fragment, last_bar_start(self.prompt))


def last_bar_start(score: symusic.Score) -> int:
    """The bar line before the prompt's last note onset: where its last tokens' bar begins."""
    return piece_bar_lines(score)[-2]


def merge(prompt: symusic.Score, fragment: symusic.Score, offset: int) -> symusic.Score:
    """`fragment`'s notes in `prompt`'s ticks from `offset` on, merged into a copy of `prompt` as a result
    is (same program and drum flag: same track, so colours and names match the final roll)."""
    return merge_into_prompt(prompt, to_prompt_time(fragment, prompt.ticks_per_quarter, offset))


def describe(request: GenerationRequest) -> str:
    """'8 bars', '10 seconds', '256 tokens': the length asked for, in the status line."""
    for value, unit in ((request.bars, "bars"), (request.seconds, "seconds"), (request.max_new_tokens, "tokens")):
        if value is not None:
            return f"{value:g} {unit}"
    return "the default length"
