"""'Regenerate these bars': the bar range beside the prompt's piano roll (shaded on it) and the handlers that
run `MusicGenerator.infill` as Generate runs `continue_midi`: the same settings, variations, seed, instrument
rules, background job, Stop and result cards; 'Keep this one' puts a result in the history like 'Continue
this one' does. Bad requests are one message before anything on the page changes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr
import symusic

from musicmha.app import bars as bar_range
from musicmha.app import history
from musicmha.app.handlers import CONTINUE_LABEL, KEEP_LABEL, Handlers, button_labels, plural  # noqa: F401
from musicmha.app.job import GenerationJob
from musicmha.app.service import audible_start, heard_note
from musicmha.app.settings import MAX_VARIATIONS, asked_words
from musicmha.app.views import placeholder_html, roll_html, roll_size
from musicmha.errors import MusicmhaError
from musicmha.generation.request import GenerationRequest

logger = logging.getLogger(__name__)

NO_PROMPT = "regenerating bars needs a prompt: drop a MIDI file or pick an example first"


class Regenerate:
    """The bar-range handlers, sharing the app's handlers (config, jobs per session, Stop, result views)."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    # --- the range on the prompt's roll ----------------------------------------------------------------
    def _prompt_score(self, prompt: str | None) -> symusic.Score | None:
        return self.handlers.read_prompt(prompt)[1]

    def prompt_roll(self, score: symusic.Score, first: int | None, last: int | None) -> str:
        """The prompt's roll as show() draws it, with bar numbers, the range shaded and one line about it."""
        count = bar_range.count_bars(score)
        if bar_range.fits(first, last, count):
            note = (f"{bar_range.edit_name(first, last, words=True).capitalize()} of {count} chosen (shaded): "
                    "'Regenerate these bars' rewrites them and keeps everything else.")
        else:
            note = f"Choose bars from 1 to {count} (from bar, then to bar) to regenerate."
        bar, heard = audible_start(score)  # a long prompt is heard from its last bars: the roll says so
        note = " ".join([note, heard_note(score, bar, heard)]).strip()
        return roll_html(score, "prompt-audio", title="prompt", note=note, marks=bar_range.marks(score, first, last),
                         heard_tick=heard)

    def choose(self, prompt: str | None, session: dict | None = None, chosen_for: str | None = None) -> tuple:
        """A new prompt: its own range (the bars last regenerated on it, see history.remember), else its last
        two bars; no prompt: no range. Returns (first, last, the prompt's roll with the range drawn and a
        caption saying how many bars there are, chosen_for); `chosen_for` is the prompt file this was last
        done for, so a refused upload (the prompt unchanged) leaves a range typed meanwhile as it is."""
        if prompt is not None and prompt == chosen_for:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        score = self._prompt_score(prompt)
        if score is None:
            return None, None, gr.skip(), None
        count = bar_range.count_bars(score)
        kept = history.current(session).get("range") if session else None
        first, last = kept if kept and bar_range.fits(*kept, count) else bar_range.default_range(count)
        return first, last, self.prompt_roll(score, first, last), prompt

    def mark(self, prompt: str | None, first: float | None, last: float | None) -> Any:
        """The range typed in, drawn on the prompt's roll (a range that does not fit is simply not shaded)."""
        score = self._prompt_score(prompt)
        if score is None:
            return gr.skip()
        return self.prompt_roll(score, bar_range.whole(first), bar_range.whole(last))

    # --- regenerating --------------------------------------------------------------------------------
    def prepare(self, prompt: str | None, first: float | None, last: float | None,
                settings: dict[str, Any]) -> tuple[Any, symusic.Score, GenerationRequest, tuple[int, int]]:
        """Every check before anything changes: the settings Generate checks too (by name, settings.FILL_SETTINGS:
        no length, prompt memory, early end, tempo or meter, since the range is the length and the piece
        keeps its own; then style and density, settings.STYLE_SETTINGS), the prompt, and the range against the
        piece and the model, by the library's own planner."""
        generator, score, request = self.handlers.prepare(prompt, settings, infill=True)
        if score is None:
            raise gr.Error(NO_PROMPT)
        start, end = bar_range.whole(first), bar_range.whole(last)
        if start is None or end is None:
            raise gr.Error(f"bars must be whole numbers (from bar, to bar), not {first!r} to {last!r}")
        try:  # the checks MusicGenerator.infill makes first: range, meter, music around it, context
            generator.plan_infill(score, start, end, request=request)  # with its style and density tokens
        except MusicmhaError as error:
            raise gr.Error(str(error)) from None
        return generator, score, request, (start, end)

    def check(self, prompt: str | None, first: float | None, last: float | None, **settings: Any) -> None:
        """The page runs this first: a bad value gives one message and nothing else changes."""
        self.prepare(prompt, first, last, settings)

    def regenerate(self, prompt: str | None, first: float | None, last: float | None, full_view: bool | None = False,
                   session: dict | None = None, request: gr.Request = None, **settings: Any) -> Iterator[tuple]:
        """Stream the same updates as Generate (status, seed, 4 audios, 4 rolls, 4 MIDI files, results) for
        new versions of bars first..last; each result is the whole piece, shown around the range."""
        generator, score, asked, bars = self.prepare(prompt, first, last, settings)
        count, full = asked.num_samples, bool(full_view)
        base, steps, edits = self.handlers.lineage(prompt, session)
        job = GenerationJob(generator, score, asked, self.handlers.config.time_limit, infill_bars=bars)
        what = bar_range.edit_name(*bars, words=True)
        waiting = [placeholder_html(f"Variation {i + 1}: regenerating {what}...") if i < count else ""
                   for i in range(MAX_VARIATIONS)]
        # No live sketch: a few bars come quickly, and the notes so far would be drawn without the range's
        # music after them; the status line counts the bars instead.
        words = asked_words(asked.style, asked.density, asked.pitch_range)
        yield from self.handlers.follow(job, request, f"Regenerating {what} ({plural(count, 'variation')}"
                                        f"{', ' + words if words else ''})", waiting)
        yield self.handlers.finish(job, base, steps, full, roll_size(count), edits, bars)
