"""The copy head: the transformer's next-token distribution mixed with a copy of what followed an earlier match.

Music repeats: in the corpus's long test pieces 77% of the tokens after position 768 continue an exact
32-token repeat. A model with an induction mechanism (find where what it just read occurred before, predict
what followed) would get those tokens almost free, but that mechanism forms late in training, after far more
tokens than a CPU run sees; the 1,024-token model scores copyable tokens barely better than new material
(docs/results.md section 9). The copy head supplies it without training, as a cache language model does
(Kuhn & De Mori 1990; Grave et al. 2017, "Improving Neural Language Models with a Continuous Cache"):

    p(x | context) = (1 - w[m]) * p_model(x | context) + w[m] * q(x)

where m is the length of the longest suffix of the context that occurred earlier in it (capped at
`max_match`), q is the distribution of the tokens that followed those earlier occurrences of length m, and
w[m] is one weight per bucket of match lengths, fitted on validation data by EM
(musicmha/evaluation/copy_fit.py) and saved beside the checkpoint (`save_copy_head`; the file is
musicmha.checkpoint's). Without a match of at least `bucket_starts[0]` tokens, w = 0.

`mix_log_probs` scores whole windows (evaluation); `CopyState` follows a growing sequence one token at a
time (generation), over everything generated so far, prompt included.

Sampling uses the weights with their odds multiplied by a boost (`for_sampling`: the request's copy_boost,
else the `sampling_boost` saved with the head): the EM weights
are right for scoring the true next token, but a sampled continuation keeps a repeat only if it follows it
token after token, and drops it at its own first deviation, so at boost 1 it repeats bars far less often
than real music does (docs/results.md section 11). The boost is calibrated on validation prompts so that
sampled continuations repeat bars as often as the true ones, and saved with the weights.

`transparent` token ids are left out of the history the head searches: the fill-in-the-middle sentinels,
taken from the tokenizer when a head is loaded (`load_copy_head` takes the tokenizer) or given to a
MusicGenerator, so a head is never used for infill without them. An
infill reads `FIM_Suffix · suffix · FIM_Prefix · prefix · FIM_Middle · FIM_Bars<n> · middle`; without the
sentinels the history is suffix · prefix · middle, so a middle that repeats the bars before it (or after it:
the suffix is in the history too) is matched across the seam, as a continuation is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from musicmha import checkpoint
from musicmha.errors import ConfigError
from musicmha.files import COPY_HEAD_FILE
from musicmha.transfer import send

if TYPE_CHECKING:
    from musicmha.data.tokenizer import MusicTokenizer

MAX_WEIGHT = 0.99  # the model keeps 1% at least: a copy that goes wrong costs log(100), never infinity


def checked_sampling_boost(boost: float) -> float:
    """A sampling boost as a float, or a ConfigError: the CLI checks one with this before a model loads."""
    boost = float(boost)
    if not (0.0 < boost < math.inf):  # also refuses NaN
        raise ConfigError(f"copy head sampling_boost must be a positive number, got {boost}")
    return boost


@dataclass(frozen=True)
class CopyHead:
    bucket_starts: tuple[int, ...] = (4, 8, 16, 32, 64)  # bucket i: match lengths in [start_i, start_i+1)
    weights: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)  # w of each bucket
    fitted_on: dict = field(default_factory=dict)  # provenance: data, targets, validation NLL before/after
    transparent: tuple[int, ...] = ()  # token ids left out of the searched history (the FIM sentinels)
    sampling_boost: float = 1.0  # generation multiplies each weight's odds w / (1 - w) by this

    def __post_init__(self) -> None:
        object.__setattr__(self, "bucket_starts", tuple(self.bucket_starts))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "transparent", tuple(self.transparent))
        if any(not isinstance(t, int) or isinstance(t, bool) or t < 0 for t in self.transparent):
            raise ConfigError(f"copy head transparent ids must be token ids >= 0, got {self.transparent}")
        object.__setattr__(self, "sampling_boost", checked_sampling_boost(self.sampling_boost))
        starts = self.bucket_starts
        if not starts or any(not isinstance(s, int) or s < 1 for s in starts) or list(starts) != sorted(set(starts)):
            raise ConfigError(f"copy head bucket_starts must be increasing whole numbers >= 1, got {starts}")
        if len(self.weights) != len(starts):
            raise ConfigError(f"copy head needs one weight per bucket: {len(starts)} buckets, "
                              f"{len(self.weights)} weights")
        if any(not (0.0 <= w <= MAX_WEIGHT) for w in self.weights):  # also refuses NaN
            raise ConfigError(f"copy head weights must be in [0, {MAX_WEIGHT}], got {self.weights}")

    @property
    def max_match(self) -> int:
        return self.bucket_starts[-1]

    def for_sampling(self, boost: float | None = None) -> CopyHead:
        """The head generation mixes in: each weight's odds times `boost` (a request's copy_boost; None: the
        head's own sampling_boost), capped at MAX_WEIGHT."""
        boost = self.sampling_boost if boost is None else checked_sampling_boost(boost)
        weights = tuple(min(MAX_WEIGHT, w * boost / (1.0 - w + w * boost)) for w in self.weights)
        return replace(self, weights=weights, sampling_boost=1.0)

    def weight_of(self, lengths: torch.Tensor) -> torch.Tensor:
        """w for each match length (any shape); 0 below the first bucket."""
        starts = torch.tensor(self.bucket_starts, device=lengths.device)
        table = torch.tensor((0.0, *self.weights), dtype=torch.float32, device=lengths.device)
        return table[torch.bucketize(lengths.contiguous(), starts, right=True)]

    def to_dict(self) -> dict[str, Any]:
        """The saved fields: `transparent` is not saved, it follows the tokenizer beside the head."""
        return {k: v for k, v in asdict(self).items() if k != "transparent"}

    @classmethod
    def from_dict(cls, values: dict[str, Any], transparent: tuple[int, ...]) -> CopyHead:
        """A head from its saved fields and its tokenizer's transparent ids (ConfigError when they are bad)."""
        try:
            return cls(**{**values, "transparent": tuple(transparent)})
        except TypeError as error:  # unknown or missing fields
            raise ConfigError(str(error)) from None

    def mix_log_probs(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """logits (B, T, V) of a window and its tokens (B, T): log p of the mixture at every position.
        Position i predicts token i + 1 from tokens[:i + 1], as the logits do."""
        q, lengths = copy_distribution(tokens, logits.shape[-1], self.max_match, self.transparent)
        return mix(logits, q, self.weight_of(lengths))


def transparent_ids(tokenizer: MusicTokenizer) -> tuple[int, ...]:
    """The token ids a copy head paired with `tokenizer` leaves out of its search: its FIM sentinels."""
    fim = tokenizer.fim_tokens
    return tuple(fim.all_ids) if fim is not None else ()


def load_copy_head(folder: str | Path, tokenizer: MusicTokenizer) -> CopyHead | None:
    """The copy head saved beside a checkpoint's weights (None when it has none), paired with `tokenizer`:
    its fill-in-the-middle sentinels are the ids the head leaves out of its search, so an infill reads the
    prefix into the middle and searches the suffix."""
    values = checkpoint.read_copy_head(folder)
    if values is None:
        return None
    try:
        return CopyHead.from_dict(values, transparent=transparent_ids(tokenizer))
    except ConfigError as error:  # unknown or missing fields, bad values
        raise ConfigError(f"{Path(folder) / COPY_HEAD_FILE} is not a valid copy head: {error}") from None


def save_copy_head(folder: str | Path, head: CopyHead) -> Path:
    """Write `head` beside a checkpoint's weights (atomically; its transparent ids follow the tokenizer)."""
    return checkpoint.write_copy_head(folder, head.to_dict())


def mix(logits: torch.Tensor, q: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """log((1 - w) softmax(logits) + w q), with w broadcast over the last (vocabulary) dimension."""
    # q and w come from the host when generating (CopyState): sent without making the host wait for the GPU
    weight = send(weight.float(), logits.device)[..., None]
    # in log space: a token the model gives ~0 keeps a finite log p, and a masked (-inf) logit stays -inf
    model_part = torch.log1p(-weight) + torch.log_softmax(logits.float(), dim=-1)
    copy_part = torch.log(weight) + torch.log(send(q, logits.device))
    return torch.logaddexp(model_part, copy_part)


def match_runs(tokens: torch.Tensor, max_match: int) -> torch.Tensor:
    """runs (B, T, T): runs[b, a, c] for c < a is the number of k >= 0 with tokens[a - k] == tokens[c - k] for
    all k below it (the exact match ending at a and at c), capped at max_match; 0 for c >= a."""
    batch, length = tokens.shape
    equal = (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(length, length, dtype=torch.bool,
                                                                     device=tokens.device).tril(-1)
    runs = equal.to(torch.int16)
    still = equal
    for k in range(1, min(max_match, length)):
        shifted = torch.zeros_like(equal)
        shifted[:, k:, k:] = equal[:, :-k, :-k]  # (a, c) -> (a - k, c - k)
        still = still & shifted
        if not still.any():
            break
        runs += still
    return runs


def copy_distribution(tokens: torch.Tensor, vocab_size: int, max_match: int,
                      transparent: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(q (B, T, V), lengths (B, T)): at position i, `lengths` is the longest match m of a suffix of
    tokens[:i + 1] with an earlier stretch ending at c < i, and q the distribution of tokens[c + 1] over the
    c with that longest match (zeros where there is none). With `transparent` ids, each row is searched with
    them left out, and position i reads the result after the last token kept up to it."""
    hidden = _is_transparent(tokens, transparent)
    if not bool(hidden.any()):
        return _copy_distribution(tokens, vocab_size, max_match)
    q = torch.zeros(*tokens.shape, vocab_size, device=tokens.device)
    lengths = torch.zeros(tokens.shape, dtype=torch.long, device=tokens.device)
    for row in range(tokens.shape[0]):
        kept = ~hidden[row]
        if not bool(kept.any()):
            continue
        row_q, row_lengths = _copy_distribution(tokens[row, kept][None], vocab_size, max_match)
        last_kept = kept.long().cumsum(0) - 1  # index among the kept tokens of the last one up to i
        seen = last_kept >= 0
        q[row, seen] = row_q[0, last_kept[seen]]
        lengths[row, seen] = row_lengths[0, last_kept[seen]]
    return q, lengths


def _is_transparent(tokens: torch.Tensor, transparent: tuple[int, ...]) -> torch.Tensor:
    if not transparent:
        return torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
    return torch.isin(tokens, torch.tensor(transparent, device=tokens.device))


def _copy_distribution(tokens: torch.Tensor, vocab_size: int, max_match: int) -> tuple[torch.Tensor, torch.Tensor]:
    runs = match_runs(tokens, max_match)  # (B, T, T)
    lengths = runs.amax(dim=-1)
    best = (runs == lengths[..., None]) & (lengths[..., None] > 0)
    following = torch.zeros(tokens.shape[0], tokens.shape[1], vocab_size, device=tokens.device)
    following[:, :-1].scatter_(-1, tokens[:, 1:, None], 1.0)  # row c: one-hot of tokens[c + 1]
    counts = best.float() @ following  # (B, T, V)
    q = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
    return q, lengths.long()


class CopyState:
    """The copy distribution of a growing batch of sequences, one new token per row at a time (generation).
    Equal to `copy_distribution` over the whole sequence, at O(length) per token. The head's transparent
    tokens are left out where every row holds one (the rows of one request share their scaffold); a
    transparent token sampled in some rows only (unconstrained sampling) is kept, as an ordinary token."""

    def __init__(self, head: CopyHead, tokens: torch.Tensor, vocab_size: int) -> None:
        self.head, self.vocab_size = head, vocab_size
        self.tokens = torch.zeros(tokens.shape[0], 0, dtype=torch.long)
        self.runs = torch.zeros(tokens.shape[0], 0, dtype=torch.int32)  # match ending at the last token, per c
        for column in tokens.cpu().T:
            self.push(column)

    def push(self, new: torch.Tensor) -> None:
        """Append one token per row (B,)."""
        new = new.cpu().long()
        if self.head.transparent and bool(_is_transparent(new, self.head.transparent).all()):
            return
        if self.tokens.shape[1] == 0:
            self.tokens = new[:, None].clone()
            self.runs = torch.zeros(len(new), 1, dtype=torch.int32)
            return
        equal = self.tokens == new[:, None]  # c = 0 .. n-1 against the new position n
        previous = torch.cat([torch.zeros(len(new), 1, dtype=torch.int32), self.runs], dim=1)[:, :-1]
        self.runs = torch.cat([torch.where(equal, (previous + 1).clamp_max(self.head.max_match), 0),
                               torch.zeros(len(new), 1, dtype=torch.int32)], dim=1)
        self.tokens = torch.cat([self.tokens, new[:, None]], dim=1)

    def distribution(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(q (B, V), lengths (B,)) for the next token."""
        if self.tokens.shape[1] == 0:
            return torch.zeros(len(self.tokens), self.vocab_size), torch.zeros(len(self.tokens), dtype=torch.long)
        lengths = self.runs.amax(dim=1)
        best = (self.runs == lengths[:, None]) & (lengths[:, None] > 0)
        counts = torch.zeros(len(lengths), self.vocab_size)
        counts.scatter_add_(1, self.tokens[:, 1:], best[:, :-1].float())  # c votes for tokens[c + 1]
        return counts / counts.sum(-1, keepdim=True).clamp_min(1.0), lengths.long()

    def mix(self, logits: torch.Tensor) -> torch.Tensor:
        """The mixture's log p (B, V) for the next token, from the model's logits (B, V)."""
        q, lengths = self.distribution()
        return mix(logits, q, self.head.weight_of(lengths))
