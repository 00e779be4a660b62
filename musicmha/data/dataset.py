"""Reading prepared token folders for training and evaluation (numpy only; no torch needed).

`TokenSplit` memory-maps `{split}.bin`, so opening a split costs nothing however large it is. Training
batches are random windows over the split's token stream (pieces are delimited by BOS ... EOS);
`batch_for_step` depends only on its arguments, so resuming at step k replays exactly the batches a
run that never stopped would have seen, and each rank of a multi-process run takes its own slice of
one global batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from musicmha.data import conditioning
from musicmha.data import fim as fim_format
from musicmha.data import part_rows
from musicmha.data import reprise as reprise_format
from musicmha.errors import MusicmhaError
from musicmha.data.conditioning import ConditionTokens
from musicmha.data.manifest import read_token_manifest
from musicmha.data.vocabulary import GrammarSpec
from musicmha.data.shards import DTYPE, bin_path, idx_path, pieces_path
from musicmha.data.split import SPLITS


class TokenSplit:
    """One split (train/validation/test) of a prepared token folder."""

    def __init__(self, tokens_dir: str | Path, split: str) -> None:
        if split not in SPLITS:
            raise MusicmhaError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.folder = Path(tokens_dir)
        self.split = split
        self.manifest = read_token_manifest(self.folder)
        expected = self.manifest["splits"][split]["tokens"]
        try:
            size = bin_path(self.folder, split).stat().st_size
            self.index = np.fromfile(idx_path(self.folder, split), dtype=np.int64).reshape(-1, 2)
        except (OSError, ValueError) as error:
            raise MusicmhaError(f"{self.folder} is missing or has a broken {split} shard: {error}") from None
        if size != expected * np.dtype(DTYPE).itemsize or len(self.index) != self.manifest["splits"][split]["sequences"]:
            raise MusicmhaError(f"{self.folder}: the {split} shard does not match manifest.json (interrupted prepare?)")
        # np.memmap refuses empty files; an empty split is legal (e.g. no test piece in a tiny corpus).
        self.tokens = (np.memmap(bin_path(self.folder, split), dtype=DTYPE, mode="r") if expected
                       else np.zeros(0, dtype=DTYPE))
        self.bos_id, self.eos_id, self.pad_id = (int(self.manifest[k]) for k in ("bos_id", "eos_id", "pad_id"))
        self.vocab_size = int(self.manifest["vocab_size"])
        self._paths: list[dict] | None = None
        self._styles: np.ndarray | None = None

    def __len__(self) -> int:
        """Number of sequences (pieces and their augmented variants)."""
        return len(self.index)

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    def piece(self, i: int) -> np.ndarray:
        """Sequence i as int64, BOS and EOS included."""
        start, length = self.index[i]
        return np.asarray(self.tokens[start:start + length], dtype=np.int64)

    def source(self, i: int) -> dict:
        """{"path": MIDI path relative to the prepared folder, "aug": augmentation name or ""} of sequence i."""
        if self._paths is None:
            lines = pieces_path(self.folder, self.split).read_text(encoding="utf-8").splitlines()
            self._paths = [json.loads(line) for line in lines]
        return self._paths[i]

    def sequence_styles(self, cond: ConditionTokens) -> np.ndarray:
        """(sequences,) int64: the id of each sequence's Style token (-1 where it has none), from the pieces
        list prepare wrote (older folders and user corpora have no styles: all -1)."""
        if self._styles is None:
            names = [self.source(i).get("style") for i in range(len(self))]
            self._styles = np.array([cond.styles.get(name, -1) if name else -1 for name in names], dtype=np.int64)
        return self._styles

    def iter_pieces(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.piece(i)


def _rng(seed: int, step: int) -> np.random.Generator:
    # SeedSequence mixes (seed, step) into independent streams: neighbouring steps are unrelated.
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(step)]))


def batch_for_step(split: TokenSplit, *, seq_len: int, batch_size: int, seed: int, step: int,
                   rank: int = 0, world_size: int = 1, fim: fim_format.FimTokens | None = None,
                   fim_rate: float = 0.0, reprise_rate: float = 0.0, bar_id: int | None = None,
                   condition: ConditionTokens | None = None, condition_dropout: float = 0.3,
                   part_rate: float = 0.0, part_spec: GrammarSpec | None = None,
                   part_layout: str = part_rows.LEAD) -> np.ndarray:
    """Rows `rank*batch_size ... (rank+1)*batch_size - 1` of the global batch of step `step`:
    `world_size*batch_size` windows of `seq_len + 1` tokens (inputs and shifted targets) starting at
    uniformly random positions of the split's stream. The stream is read circularly, so a split shorter
    than a window still gives full windows (its end joins its start at an EOS -> BOS boundary).

    With `fim_rate` > 0, that fraction of the rows becomes fill-in-the-middle examples (musicmha/data/fim.py),
    drawn from a random stream of their own: the windows themselves, and every row at rate 0, are the same
    as without FIM.

    With `reprise_rate` > 0 (needs the tokenizer's `bar_id`), that fraction of the rows first becomes A A B…
    (musicmha/data/reprise.py), from a random stream of its own in the same way.

    With `condition` (the tokenizer's style and density tokens), every row first opens with its style and
    density tokens, each dropped with probability `condition_dropout` (musicmha/data/conditioning.py), again
    from a stream of its own; without it the rows are the plain windows.

    With `part_rate` > 0 (needs the tokenizer's grammar spec and FIM tokens), that fraction of the rows
    becomes part rows in `part_layout` (musicmha/data/part_rows.py), again from a stream of its own; a row made a
    part row is never also a FIM row."""
    if seq_len < 1 or batch_size < 1:
        raise MusicmhaError(f"seq_len and batch_size must be >= 1, got {seq_len} and {batch_size}")
    if not 0 <= rank < world_size:
        raise MusicmhaError(f"rank must be in 0..{world_size - 1}, got {rank}")
    n = split.num_tokens
    if n == 0:
        raise MusicmhaError(f"the {split.split} split of {split.folder} is empty")
    if fim_rate and (fim is None or not 0.0 <= fim_rate <= 1.0 or seq_len + 1 <= fim_format.EXTRA_TOKENS):
        raise MusicmhaError(f"fill-in-the-middle needs the tokenizer's FIM tokens, a rate in [0, 1] (got "
                            f"{fim_rate}) and windows longer than {fim_format.EXTRA_TOKENS} tokens")
    if reprise_rate and (bar_id is None or not 0.0 <= reprise_rate <= 1.0):
        raise MusicmhaError(f"reprise rows need the tokenizer's bar id and a rate in [0, 1] (got {reprise_rate})")
    if part_rate and (part_spec is None or fim is None or not 0.0 <= part_rate <= 1.0
                      or part_layout not in part_rows.LAYOUTS):
        raise MusicmhaError(f"part rows need the tokenizer's grammar spec and FIM tokens and a rate in [0, 1] "
                            f"(got {part_rate})")
    mine = slice(rank * batch_size, (rank + 1) * batch_size)
    starts = _rng(seed, step).integers(0, n, size=world_size * batch_size)[mine]
    batch = _windows(split, starts, seq_len + 1)
    if condition is not None:
        _, row_seeds = _rows_to_rearrange(seed, step, _CONDITION_STREAM, 1.0, world_size * batch_size)
        batch = conditioning.condition_rows(batch, starts, n, split.index[:, 0], split.sequence_styles(condition),
                                            condition, condition_dropout, row_seeds[mine])
    if reprise_rate:
        chosen, row_seeds = _rows_to_rearrange(seed, step, _REPRISE_STREAM, reprise_rate, world_size * batch_size)
        batch = reprise_format.apply_to_rows(batch, chosen[mine], row_seeds[mine], bar_id=bar_id,
                                             bos_id=split.bos_id, eos_id=split.eos_id)
    part_made = np.zeros(batch.shape[0], dtype=bool)
    if part_rate:
        chosen, row_seeds = _rows_to_rearrange(seed, step, _PART_STREAM, part_rate, world_size * batch_size)
        batch, part_made = part_rows.apply_to_rows(batch, part_spec, fim.middle, chosen[mine], row_seeds[mine],
                                                   part_layout)
    if fim_rate:
        chosen, row_seeds = _rows_to_rearrange(seed, step, _FIM_STREAM, fim_rate, world_size * batch_size)
        batch = fim_format.apply_to_rows(batch, fim, chosen[mine] & ~part_made, row_seeds[mine])
    return batch


def _rows_to_rearrange(seed: int, step: int, stream: int, rate: float, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of the global batch of `step` a rearrangement takes (each with probability `rate`) and a
    seed for each row, from a random stream of its own (a third SeedSequence word), so that every kind of
    rearrangement draws independently of the window starts and of the others."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(step), stream]))
    return rng.random(rows) < rate, rng.integers(0, 2**63 - 1, size=rows)


_FIM_STREAM = 0xF1  # a third SeedSequence word keeps the FIM draws independent of the window starts
_REPRISE_STREAM = 0xE9  # and the reprise draws independent of both
_CONDITION_STREAM = 0xC0  # and the style and density drops of all three
_PART_STREAM = 0xA9  # and the part rows of all four


def _windows(split: TokenSplit, starts: np.ndarray, length: int) -> np.ndarray:
    """(len(starts), length) int64 windows of the split's stream, read circularly."""
    n = split.num_tokens
    if n >= length and (starts + length <= n).all():
        # Contiguous slices read far less of the memmap than fancy indexing when windows do not wrap.
        return np.stack([np.asarray(split.tokens[s:s + length], dtype=np.int64) for s in starts])
    positions = (starts[:, None] + np.arange(length)[None, :]) % n
    return np.asarray(split.tokens[positions.ravel()], dtype=np.int64).reshape(len(starts), length)
