"""What the token grammar knows of a vocabulary: `GrammarSpec`, the plain description MusicTokenizer gives of
itself (tokens, their type successions, specials, position resolution).

It lives under data/ because the tokenizer writes it: the tokenizer must not import generation, where the
grammar that reads it lives (musicmha.generation.grammar), and the grammar must not import miditok. Plain
data, no torch and no miditok.
"""

from __future__ import annotations

from dataclasses import dataclass

DRUMS = -1  # the drum kit's program as the vocabulary writes it: Program_-1, followed by PitchDrum tokens


@dataclass
class GrammarSpec:
    """What the grammar needs to know about a tokenizer (built by MusicTokenizer.grammar_spec())."""

    tokens: list[str]  # id -> "Type_value"
    graph: dict[str, set[str]]  # type -> the types that may follow it
    bos_id: int
    eos_id: int
    pad_id: int
    positions_per_beat: int  # a Position counts 1/positions_per_beat of a beat (1/denominator note)
    remove_duplicated_notes: bool = False
    # Every special token (BOS, EOS, PAD, and others such as fill-in-the-middle sentinels): none of them
    # is music, so the grammar never offers one, EOS aside.
    special_ids: frozenset[int] = frozenset()
    bar_id: int | None = None  # the bar line (None: a vocabulary without bars)
