"""Token-level sampling with a static KV cache (gpt-fast style: prefill, one-token decode, sample).

Generation can run past the model's context: when the cache is full, the window slides forward by a
quarter of the context and the kept tokens are prefilled again (one forward pass, amortized over a quarter
context of cheap cached steps). `use_cache=False` recomputes the same window every step: slower, but the
same conditioning, which the tests use as the reference for the cached path.

How tokens are drawn is one `SamplingOptions` (musicmha/generation/options.py), checked when it is made;
a seed there gives every row its own random stream, so row k of a batch is made again alone by seed + k.

On a GPU the decode loop waits for the device once per token, when the new tokens come to the host: the
host keeps its own copy of the sequences for the grammar (`allowed`), `stop`, the callback and the rows
that have ended, and masks go back without waiting (tests/generation/test_host_syncs.py counts the reads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from musicmha.generation.options import SEED_LIMIT, SamplingOptions
from musicmha.nn.attention import KVCache
from musicmha.generation.copy_head import CopyHead, CopyState
from musicmha.transfer import send

AllowedFn = Callable[[torch.Tensor], torch.Tensor]
Rng = torch.Generator | Sequence[torch.Generator]


def row_seed(seed: int, row: int) -> int:
    """The seed of row `row` of a batch sampled with `seed`: with num_samples=1 it makes that row again."""
    return (seed + row) % SEED_LIMIT


def row_rngs(seed: int, count: int, device: torch.device | str) -> list[torch.Generator]:
    """One random stream per row, seeded row_seed(seed, k), on the device that samples."""
    return [torch.Generator(device=device).manual_seed(row_seed(seed, k)) for k in range(count)]


def sample_from_logits(logits: torch.Tensor, options: SamplingOptions = SamplingOptions(), *,
                       rng: Rng | None = None, allowed_mask: torch.Tensor | None = None) -> torch.Tensor:
    """logits (B, V) -> next tokens (B,). Greedy options (top_k=1 or temperature=0) use no randomness.
    options.seed is not read here: `generate` turns it into per-row streams once, passed as rng.

    A mask that leaves a row no token is refused; checking it reads the mask on the host, a sync when it
    lives on a GPU (`generate` checks its host-built masks before sending them, and never comes here)."""
    if allowed_mask is not None:
        allowed_mask = allowed_mask.to(device=logits.device, dtype=torch.bool)
        _check_some_token_left(allowed_mask.expand_as(logits))
    return _sample(logits, options, rng, allowed_mask).to(logits.device)


def _check_some_token_left(mask: torch.Tensor) -> None:
    if not mask.any(-1).all():
        raise ValueError("the allowed-token mask leaves no token to sample")


def _sample(logits: torch.Tensor, options: SamplingOptions, rng: Rng | None,
            allowed_mask: torch.Tensor | None) -> torch.Tensor:
    """`sample_from_logits` without the mask check, on the device that drew the tokens (a CPU rng's tokens
    stay on the CPU: `generate` wants them there anyway, so moving them to the GPU and back would cost a sync)."""
    logits = logits.float()
    if allowed_mask is not None:
        logits = logits.masked_fill(~allowed_mask.expand_as(logits), float("-inf"))
    if options.greedy:
        return logits.argmax(-1)
    top_k, top_p = options.top_k, options.top_p
    logits = logits / options.temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely tokens
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the first token always stays
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return _draw(probs, rng)


def _draw(probs: torch.Tensor, rng: Rng | None) -> torch.Tensor:
    """One token per row of probs (B, V), drawn and returned on the rng's device (probs' without one).

    A torch.Generator only draws on its own device (`torch.multinomial` refuses a CPU one for CUDA
    probabilities), and the README passes a CPU one whatever the model's device. Moving the (B, V)
    probabilities costs one small copy per step, and makes the draw the one a CPU run makes for that
    seed; an rng on the probabilities' device takes the plain path, bit for bit as before.

    A sequence of rngs gives each row its own: row k then depends on its own seed only, so a
    variation drawn in a batch of four can be made again alone from its seed."""
    if isinstance(rng, (list, tuple)):
        if len(rng) != probs.shape[0]:
            raise ValueError(f"{len(rng)} random generators for {probs.shape[0]} rows")
        rows = [_draw(probs[i:i + 1], g) for i, g in enumerate(rng)]
        if len({row.device for row in rows}) > 1:  # rngs on several devices: meet on the probabilities'
            rows = [row.to(probs.device) for row in rows]
        return torch.cat(rows)
    if rng is None or rng.device == probs.device:
        return torch.multinomial(probs, 1, generator=rng).squeeze(-1)
    return torch.multinomial(probs.to(rng.device), 1, generator=rng).squeeze(-1)


def prefill(model: torch.nn.Module, tokens: torch.Tensor, cache: list[KVCache]) -> torch.Tensor:
    """Run the whole (B, T) window through the model, filling the cache; logits of the last position."""
    logits, _ = model(tokens, kv_cache=cache, start_pos=0)
    return logits[:, -1]


def decode_one(model: torch.nn.Module, token: torch.Tensor, position: int,
               cache: list[KVCache]) -> torch.Tensor:
    """Feed one token per row (B,) at `position` against the cache; logits (B, V) of the next token."""
    logits, _ = model(token[:, None], kv_cache=cache, start_pos=position)
    return logits[:, -1]


def _device_mask(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An `allowed` mask on the model's device. One built on the host (the grammar's) is checked there, before
    it is sent: checking it on a GPU would wait for the GPU. A mask already on the device is checked there."""
    mask = mask.to(dtype=torch.bool)
    if mask.device.type == "cpu":
        _check_some_token_left(mask)
        return send(mask, device)
    mask = mask.to(device)
    _check_some_token_left(mask)  # the caller built it on the device: this read is its cost
    return mask


def _check_arguments(tokens: torch.Tensor, max_new_tokens: int, options: SamplingOptions) -> torch.Tensor:
    if tokens.dim() == 1:
        tokens = tokens[None]
    if tokens.dim() != 2 or tokens.shape[1] == 0:
        raise ValueError("tokens must be a non-empty (T,) or (B, T) tensor; start from BOS for no prompt")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not isinstance(options, SamplingOptions):  # its own checks ran when it was made
        raise TypeError(f"options must be a SamplingOptions, got {type(options).__name__}")
    return tokens


@torch.inference_mode()
def generate(model: torch.nn.Module, tokens: torch.Tensor, options: SamplingOptions, max_new_tokens: int, *,
             rng: Rng | None = None,
             callback: Callable[[int, torch.Tensor], bool | None] | None = None,
             allowed: AllowedFn | None = None, eos_token_id: int | None = None,
             stop: Callable[[torch.Tensor], torch.Tensor] | None = None,
             use_cache: bool = True, copy_head: CopyHead | None = None,
             copy_boost: float | None = None) -> torch.Tensor:
    """Return the prompt followed by the new tokens, (B, T + n) (or (T + n,) for a 1-D prompt).

    Randomness: `rng` (one torch.Generator, or one per row) when given, else per-row streams seeded from
    options.seed (row_rngs), else torch's global random state.

    callback(step, new_tokens (B,)) runs after every token, for streaming; when it returns True, generation
    ends there and what was made so far is returned (a Stop button keeps the partial music).
    allowed(sequences (B, t)) returns a bool mask (B, V) or (V,) of the tokens that may come next. Rows that
    emit eos_token_id keep emitting it; generation ends early when every row has. stop(sequences) -> bool (B,)
    ends rows the same way (the rows then continue with eos_token_id, which it requires).

    Host syncs: one per token. The new tokens are copied to the host once per step, and the callback, `allowed`
    and `stop` get CPU tensors (the host's copy of the sequences), whatever the model's device, so reading
    them costs nothing more; a mask built on the CPU is checked there and sent without waiting.

    copy_head: the model's distribution is mixed with a copy of what followed the longest earlier match in
    everything generated so far, prompt included (musicmha/generation/copy_head.py), before sampling; followed on
    the host, with the head's sampling weights at `copy_boost` (None: the head's own; `CopyHead.for_sampling`).
    """
    if stop is not None and eos_token_id is None:
        raise ValueError("stop needs an eos_token_id to pad the rows it ends")
    squeeze = tokens.dim() == 1
    seq = _check_arguments(tokens, max_new_tokens, options)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    host = seq.cpu()  # what the grammar, `stop` and `finished` read: reading the device's copy would sync
    seq = send(seq, device)
    if rng is None and options.seed is not None and not options.greedy:
        rng = row_rngs(options.seed, seq.shape[0], device)
    context = model.config.max_seq_len
    slide = max(1, context // 4)
    window_start = max(0, seq.shape[1] - context)  # a prompt longer than the context keeps its end
    cache = model.new_kv_cache(seq.shape[0], context) if use_cache else None
    finished = torch.zeros(seq.shape[0], dtype=torch.bool)  # on the host
    logits = prefill(model, seq[:, window_start:], cache) if use_cache else None
    copy = CopyState(copy_head.for_sampling(copy_boost), host, model.config.vocab_size) if copy_head is not None else None
    try:
        for step in range(max_new_tokens):
            if logits is None:  # no cache: recompute the current window
                logits = model(seq[:, window_start:])[0][:, -1]
            if copy is not None:
                logits = copy.mix(logits)  # log p of the mixture: sampling reads it as logits
            mask = _device_mask(allowed(host), device) if allowed is not None else None
            drawn = _sample(logits, options, rng, mask)  # on the device, or on a CPU rng's
            new = drawn.cpu()  # the step's one device -> host copy
            if eos_token_id is not None:
                if finished.any():  # finished rows keep emitting EOS
                    new = drawn = new.masked_fill(finished, eos_token_id)
                finished |= new == eos_token_id
            next_token = drawn if drawn.device == device else send(new, device)
            host = torch.cat([host, new[:, None]], dim=1)
            if copy is not None:
                copy.push(new)
            seq = torch.cat([seq, next_token[:, None]], dim=1)
            if callback is not None and callback(step, new):
                break
            if stop is not None:
                finished |= stop(host).cpu()
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            logits = None
            if seq.shape[1] - window_start > context:  # the window is full: slide it
                window_start = seq.shape[1] - context + slide
                if use_cache:
                    logits = prefill(model, seq[:, window_start:], cache)
            elif use_cache:
                logits = decode_one(model, next_token, seq.shape[1] - 1 - window_start, cache)
    finally:
        model.train(was_training)
    return seq[0] if squeeze else seq
