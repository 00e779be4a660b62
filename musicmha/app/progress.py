"""How far a running generation is, in the words of its request, without gradio: bars done per variation
(never more than asked), the music's seconds for a request in seconds, model steps for one in steps, and an
estimate of the time left from the slowest variation.

Bars are counted from the bar tokens each variation wrote: continuing a piece, the first new bar line opens
bar 1 (the tokens before it finish the prompt's last bar), so a bar is done when the next one opens;
regenerating bars, the range's first bar line is given and each bar line the model writes closes a bar.
The bar in progress counts by its share of the tokens an average bar of that variation took, so the
estimate moves between bar lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import symusic

from musicmha.generation.request import GenerationRequest

_MIN_FRACTION = 0.02  # less done than this: too early to tell the time left
_MAX_PARTIAL = 0.95  # a bar in progress counts at most this much of a bar


@dataclass(frozen=True)
class Progress:
    """Per variation, how much is done (`done`, in `unit`, at most `total`), and the share of the request the
    slowest variation has made (`fraction`, 0..1, bars in progress counted by their tokens)."""

    done: tuple[float, ...]
    total: float
    unit: str  # "bars", "seconds" or "model steps"
    fraction: float

    def summary(self) -> str:
        """'bars done: 3, 5, 0 and 4 of 32', one per variation ('bars done: 3 of 32 in each variation')."""
        about = "about " if self.unit == "seconds" else ""
        values = [f"{value:.0f}" for value in self.done] or ["0"]
        if len(set(values)) == 1:
            each = " in each variation" if len(values) > 1 else ""
            return f"{self.unit} done: {about}{values[0]} of {self.total:g}{each}"
        listed = f"{', '.join(values[:-1])} and {values[-1]}"
        return f"{self.unit} done: {about}{listed} of {self.total:g}"

    def text(self, elapsed: float) -> str:
        """The status line's progress: the summary, the time so far and an estimate of the time left."""
        return f"{self.summary()} ({elapsed:.0f} s so far, {time_left(self.fraction, elapsed)})"


def time_left(fraction: float, elapsed: float) -> str:
    """'about 1 min 20 s left' from the share done in `elapsed` seconds (at the pace so far)."""
    if fraction < _MIN_FRACTION or elapsed < 1.0:
        return "estimating the time left"
    if fraction >= 1.0:
        return "finishing"
    left = round(elapsed * (1.0 - fraction) / fraction)
    return f"about {left // 60} min {left % 60} s left" if left >= 60 else f"about {max(left, 1)} s left"


def bars_done(row: Sequence[int], bar_id: int, total: int, first_bar_given: bool) -> tuple[int, float]:
    """(bars done, at most `total`; bars done plus the share of the bar in progress) of one variation."""
    positions = [i for i, token in enumerate(row) if token == bar_id]
    starts = [0, *positions] if first_bar_given else positions  # where bars 1, 2, ... open in the row
    done = max(len(starts) - 1, 0)
    partial = 0.0
    if done:  # the bar in progress, by the tokens an average bar took so far
        per_bar = (starts[-1] - starts[0]) / done
        partial = min((len(row) - starts[-1]) / per_bar, _MAX_PARTIAL) if per_bar > 0 else 0.0
    return min(done, total), min(done + partial, float(total))


def seconds_per_bar(prompt: symusic.Score | None, request: GenerationRequest) -> float:
    """The length of a bar at the prompt's last tempo and meter (from nothing: the ones asked for, else 120
    BPM in 4/4): what turns bars into the seconds a request in seconds asks for."""
    qpm, meter = request.tempo or 120.0, request.time_signature or (4, 4)
    if prompt is not None:
        qpm = float(prompt.tempos[-1].qpm) if len(prompt.tempos) else 120.0
        if len(prompt.time_signatures):
            last = prompt.time_signatures[-1]
            meter = (int(last.numerator), int(last.denominator))
    return meter[0] * 4 / meter[1] * 60.0 / qpm


def measure(rows: Sequence[Sequence[int]], bar_id: int | None, request: GenerationRequest, steps: int,
            prompt: symusic.Score | None = None, infill_bars: tuple[int, int] | None = None) -> Progress:
    """The progress of a generation that has written `rows` (new token ids per variation) in `steps` steps,
    for `request` (continuing `prompt`, or regenerating `infill_bars` of it)."""
    count = max(len(rows), 1)
    if infill_bars is not None or request.bars or request.seconds:
        if bar_id is None:  # a tokenizer without bars: only the steps can be counted
            return _steps(steps, request, count)
        first_given = infill_bars is not None
        total = infill_bars[1] - infill_bars[0] + 1 if first_given else int(request.bars or 0)
        if request.seconds:
            total = max(1, int(-(-request.seconds // seconds_per_bar(prompt, request))))  # bars that hold them
        counted = [bars_done(row, bar_id, total, first_given) for row in rows] or [(0, 0.0)]
        fraction = min(share for _, share in counted) / total
        if request.seconds:
            each = seconds_per_bar(prompt, request)
            return Progress(tuple(min(done * each, request.seconds) for done, _ in counted), request.seconds,
                            "seconds", fraction)
        return Progress(tuple(float(done) for done, _ in counted), total, "bars", fraction)
    return _steps(steps, request, count)


def _steps(steps: int, request: GenerationRequest, count: int) -> Progress:
    total = request.length.token_limit
    done = float(min(steps, total))
    return Progress((done,) * count, total, "model steps", done / total)
