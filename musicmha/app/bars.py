"""The bar range of "Regenerate these bars", without gradio: how many bars a prompt has, a default range,
the ticks of a range, the window a regenerated variation is heard and seen in, and the marks drawn on rolls.

Bars are counted from 1 as a musician counts them, on the piece's own time signatures from its start, up to
the bar holding its last note onset: the bars the tokenizer writes, so the numbers on the page are the ones
`MusicGenerator.infill` takes (musicmha/generation/infill.py checks them again against the model).
"""

from __future__ import annotations

import symusic

from musicmha.app.views import CONTEXT_BARS, BarMarks
from musicmha.data.midi_io import piece_bar_lines as bar_lines  # noqa: F401 (the bars the page numbers)


def count_bars(score: symusic.Score) -> int:
    return len(bar_lines(score)) - 1


def default_range(count: int) -> tuple[int, int]:
    """The last two bars (music before them to fill from); a piece of one or two bars: its last bar."""
    return (count - 1, count) if count >= 3 else (max(count, 1), max(count, 1))


def whole(value: float | None) -> int | None:
    """A bar number from a page field: a whole number, else None (blank, 2.5, nan)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def edit_name(first: int, last: int, words: bool = False) -> str:
    """'3-4' (or '3' for one bar) as the history keeps it; with `words`, 'bars 3-4' / 'bar 3'."""
    text = str(first) if first == last else f"{first}-{last}"
    return f"bar{'' if first == last else 's'} {text}" if words else text


def fits(first: int | None, last: int | None, count: int) -> bool:
    return first is not None and last is not None and 1 <= first <= last <= count


def span(score: symusic.Score, first: int, last: int) -> tuple[int, int]:
    """[start, end) ticks of bars `first`..`last` (a range that fits the piece)."""
    lines = bar_lines(score)
    return lines[first - 1], lines[last]


def focus(score: symusic.Score, first: int, last: int, bars: int = CONTEXT_BARS) -> tuple[int, int | None]:
    """The window a regenerated range is heard and seen in: from `bars` bars before it to `bars` bars after
    it (None: to the piece's end), so the new bars are heard in the music that leads in and out of them."""
    lines = bar_lines(score)
    start = lines[max(first - 1 - bars, 0)]
    after = last + bars
    return start, lines[after] if after < len(lines) - 1 else None


def marks(score: symusic.Score, first: int | None = None, last: int | None = None, start: int = 0,
          stop: int | None = None) -> BarMarks:
    """Bar numbers of `score` from tick `start` (to `stop`) and the range `first`..`last` shaded, in the
    ticks of the window that starts at `start`."""
    lines = bar_lines(score)
    shown = tuple((number, tick - start) for number, tick in enumerate(lines[:-1], 1)
                  if start <= tick and (stop is None or tick < stop))
    if first is None or last is None or not fits(first, last, len(lines) - 1):
        return BarMarks(shown)
    return BarMarks(shown, (lines[first - 1] - start, lines[last] - start), edit_name(first, last, words=True))
