"""Conditioning prefixes: the style and density tokens a training window opens with (issue 28).

A prepared piece is stored as BOS … EOS with no conditioning in it; its style (musicmha/data/styles.py) is
kept beside it in the shard's pieces list. Each training row is then made as generation will read it:

- a row that starts inside a piece opens with `Style_<its piece's style>` and `Density_<level>`;
- a row that starts at a piece's BOS reads BOS, Style, Density;
- a piece that begins inside the row gets its own Style after its BOS (its density is not known there).

Each row keeps its style and its density token independently with probability 1 - `dropout`, so the model
also learns to continue with no style or density given (and then infers them from the music, as before).
The row keeps its length: what the prefix adds is cut from its end. The density level is the notes per bar
of the row's own music, so asking for a level asks for music that dense.

Numpy only; the rows come from and go back to dataset.batch_for_step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicmha.data.styles import DENSITY_LEVELS, STYLE_PREFIX, density_level, density_tokens, style_tokens


@dataclass(frozen=True)
class ConditionTokens:
    """The ids of a vocabulary's conditioning tokens (MusicTokenizer.condition_tokens builds it)."""

    styles: dict[str, int]  # style name -> id of Style_<name>
    densities: tuple[int, ...]  # ids of Density_1 .. Density_N
    note_ids: np.ndarray  # bool over the vocabulary: the ids that write a note's pitch (Pitch, PitchDrum)
    bar_id: int
    bos_id: int

    def __post_init__(self) -> None:
        if len(self.densities) != DENSITY_LEVELS:
            raise ValueError(f"expected {DENSITY_LEVELS} density tokens, got {len(self.densities)}")

    @classmethod
    def from_vocab(cls, vocab: dict[str, int], *, bar_id: int, bos_id: int) -> ConditionTokens | None:
        """From a base vocabulary (token name -> id); None when it lacks any style or density token."""
        names = (*style_tokens(), *density_tokens())
        if any(name not in vocab for name in names):
            return None
        note_ids = np.zeros(len(vocab), dtype=bool)
        note_ids[[i for name, i in vocab.items() if name.startswith(("Pitch_", "PitchDrum_"))]] = True
        return cls(styles={name[len(STYLE_PREFIX):]: vocab[name] for name in style_tokens()},
                   densities=tuple(vocab[name] for name in density_tokens()), note_ids=note_ids,
                   bar_id=bar_id, bos_id=bos_id)

    @property
    def all_ids(self) -> frozenset[int]:
        return frozenset((*self.styles.values(), *self.densities))

    def prefix(self, style: str | None, density: int | None) -> list[int]:
        """The tokens that ask for `style` and `density` (either may be None), in training's order."""
        ids = [self.styles[style]] if style is not None else []
        return ids + ([self.densities[density - 1]] if density is not None else [])

    def level_of(self, tokens: np.ndarray) -> int:
        """The density level of a token sequence: its notes per bar (one bar at least)."""
        tokens = np.asarray(tokens)
        notes = int(self.note_ids[tokens].sum())
        bars = int((tokens == self.bar_id).sum())
        return density_level(notes, bars)


def condition_rows(batch: np.ndarray, row_starts: np.ndarray, stream_length: int, sequence_starts: np.ndarray,
                   sequence_styles: np.ndarray, cond: ConditionTokens, dropout: float,
                   row_seeds: np.ndarray) -> np.ndarray:
    """Rows of `batch` (B, L) read from the stream at `row_starts`, with their conditioning tokens put in
    (module docstring) and cut back to L. `sequence_starts` (S,) are where the stream's sequences begin and
    `sequence_styles` (S,) their style ids (-1: none); each row draws its keep/drop choices from its seed."""
    rows, length = batch.shape
    out = np.empty_like(batch)
    for r in range(rows):
        rng = np.random.default_rng(int(row_seeds[r]))
        keep_style, keep_density = rng.random(2) >= dropout
        window = batch[r]
        bos_at = np.flatnonzero(window == cond.bos_id)
        positions = (int(row_starts[r]) + bos_at) % stream_length
        bos_styles = sequence_styles[np.searchsorted(sequence_starts, positions, side="right") - 1]
        density = [cond.densities[cond.level_of(window) - 1]] if keep_density else []
        pieces: list[np.ndarray | list[int]] = []
        if not (len(bos_at) and bos_at[0] == 0):  # the row starts inside a piece
            first = sequence_styles[np.searchsorted(sequence_starts, int(row_starts[r]) % stream_length,
                                                    side="right") - 1]
            pieces.append(([int(first)] if keep_style and first >= 0 else []) + density)
        cut = 0
        for at, style in zip(bos_at, bos_styles):
            pieces.append(window[cut:at + 1])
            pieces.append([int(style)] if keep_style and style >= 0 else [])
            if at == 0:
                pieces.append(density)
            cut = at + 1
        pieces.append(window[cut:])
        out[r] = np.concatenate([np.asarray(p, dtype=batch.dtype) for p in pieces])[:length]
    return out
