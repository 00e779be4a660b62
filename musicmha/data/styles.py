"""Styles and density levels: the conditioning words a training window can open with (issue 28).

A corpus piece's style is its collection's (Bach chorales, Palestrina masses, O'Neill's fiddle tunes...) or,
for an arrangement, its MMA groove's family (rock, swing, bossa nova...). Small collections of one period
share a style, so every style has enough pieces to be learned; collections that are not one kind of music
(music21's demos, lead sheets, theory exercises) have none. A density level is the notes per bar of a
window, on a doubling scale, so "busier" means the same thing for a folk tune and a band.

Both are written as special tokens of the tokenizer (`Style_<name>`, `Density_<level>`): they are not music,
so the grammar never samples one and the decoder drops them. Training puts them after BOS and at the start of
a window that cuts into a piece (musicmha/data/conditioning.py); generation puts the asked-for ones after BOS.
This module is plain data: no miditok, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from musicmha.errors import ConfigError

STYLE_PREFIX = "Style_"
DENSITY_PREFIX = "Density_"

# Collection of music21's corpus -> style. Periods with few files share one style.
COLLECTION_STYLES: dict[str, str] = {
    "bach": "chorale",
    "palestrina": "renaissance", "josquin": "renaissance", "lusitano": "renaissance",
    "monteverdi": "madrigal",
    "trecento": "medieval", "ciconia": "medieval", "luca": "medieval",
    "essenFolksong": "folk-song", "miscFolk": "folk-song", "liliuokalani": "folk-song",
    "oneills1850": "fiddle-tune", "ryansMammoth": "fiddle-tune", "nottingham-dataset": "fiddle-tune",
    "airdsAirs": "fiddle-tune",
    "beethoven": "classical", "haydn": "classical", "mozart": "classical", "handel": "classical",
    "corelli": "classical", "cpebach": "classical", "weber": "classical", "verdi": "classical",
    "schubert": "romantic", "chopin": "romantic", "schumann_clara": "romantic", "schumann_robert": "romantic",
    "beach": "romantic", "johnson_j_r": "romantic",
    "joplin": "ragtime",
    "schoenberg": "modern", "webern": "modern",
}

# The groove families of the arrangements (musicmha/data/groove_table.py), as their style names.
GROOVE_STYLES: tuple[str, ...] = (
    "rock", "pop", "ballad", "blues", "rnb", "funk", "gospel", "country", "folk", "swing", "jazz", "latin",
    "bossa-nova", "ballroom", "waltz", "march", "polka", "showtune", "world", "electronic",
)

# Every style in token order, with the words a musician reads in a menu.
STYLES: dict[str, str] = {
    "chorale": "Bach chorale (four voices)", "renaissance": "Renaissance polyphony (Palestrina, Josquin)",
    "madrigal": "Monteverdi madrigal", "medieval": "Medieval (Trecento)",
    "folk-song": "folk song (Essen collection)", "fiddle-tune": "fiddle tune (jigs, reels, hornpipes, airs)",
    "classical": "classical (Haydn, Mozart, Beethoven quartets)", "romantic": "romantic piano and song",
    "ragtime": "ragtime (Joplin)", "modern": "twentieth-century (Schoenberg, Webern)",
    "rock": "rock band", "pop": "pop", "ballad": "ballad", "blues": "blues", "rnb": "rhythm and blues",
    "funk": "funk", "gospel": "gospel", "country": "country", "folk": "folk band", "swing": "swing",
    "jazz": "jazz", "latin": "Latin (salsa, mambo, rumba...)", "bossa-nova": "bossa nova",
    "ballroom": "ballroom (tango, foxtrot, quickstep...)", "waltz": "waltz", "march": "march", "polka": "polka",
    "showtune": "show tune", "world": "world", "electronic": "electronic",
}

# Density levels: notes per bar (every instrument, drums included) up to each bound; the last is open.
DENSITY_BOUNDS: tuple[float, ...] = (3, 6, 12, 24, 48, 96)
DENSITY_WORDS: tuple[str, ...] = ("very calm", "calm", "moderate", "lively", "busy", "very busy", "densest")
DENSITY_LEVELS = len(DENSITY_BOUNDS) + 1


def style_tokens() -> tuple[str, ...]:
    """The style special tokens, in a fixed order: the vocabulary writes them after the FIM sentinels."""
    return tuple(STYLE_PREFIX + name for name in STYLES)


def density_tokens() -> tuple[str, ...]:
    return tuple(f"{DENSITY_PREFIX}{level}" for level in range(1, DENSITY_LEVELS + 1))


def style_of_piece(piece: Mapping) -> str | None:
    """A corpus manifest piece's style: its groove family for an arrangement, else its collection's; None
    for a collection with no one style, or a family this version does not know."""
    family = piece.get("family")
    if family:
        name = str(family).replace(" ", "-")
        return name if name in STYLES else None
    return COLLECTION_STYLES.get(str(piece.get("collection", "")))


def density_level(notes: int, bars: int) -> int:
    """1..DENSITY_LEVELS: the level of `notes` notes over `bars` bars (at least one bar is counted)."""
    per_bar = notes / max(1, bars)
    return 1 + sum(per_bar > bound for bound in DENSITY_BOUNDS)


def level_notes_per_bar(level: int) -> float:
    """The geometric middle of a level's range of notes per bar (what asking for that level aims at)."""
    check_density(level)
    low = DENSITY_BOUNDS[level - 2] if level > 1 else DENSITY_BOUNDS[0] / 2
    high = DENSITY_BOUNDS[level - 1] if level <= len(DENSITY_BOUNDS) else DENSITY_BOUNDS[-1] * 2
    return math.sqrt(low * high)


def parse_style(text: str) -> str:
    """A style name from what a user typed ("Bossa Nova", "bossa-nova", "bossa_nova"); ConfigError listing
    the styles otherwise."""
    name = str(text).strip().lower().replace(" ", "-").replace("_", "-")
    if name not in STYLES:
        raise ConfigError(f"unknown style {text!r}; choose one of: {', '.join(STYLES)}")
    return name


RELATIVE_DENSITIES = ("calmer", "busier")  # one level either side of the prompt's own


def parse_density(value: int | str) -> int | str:
    """A density request: a level 1..DENSITY_LEVELS (as a number or its word) or "calmer"/"busier" (resolved
    against the prompt by the generator); ConfigError listing the choices otherwise."""
    if isinstance(value, str):
        word = value.strip().lower().replace("-", " ").replace("_", " ")
        if word in RELATIVE_DENSITIES:
            return word
        if word in DENSITY_WORDS:
            return DENSITY_WORDS.index(word) + 1
        if word.isdigit():
            return check_density(int(word))
        raise ConfigError(f"unknown density {value!r}; choose a level 1-{DENSITY_LEVELS}, one of "
                          f"{', '.join(DENSITY_WORDS)}, or {' / '.join(RELATIVE_DENSITIES)}")
    return check_density(value)


def check_density(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= DENSITY_LEVELS:
        raise ConfigError(f"density must be a level from 1 ({DENSITY_WORDS[0]}) to {DENSITY_LEVELS} "
                          f"({DENSITY_WORDS[-1]}), got {level!r}")
    return level
