"""The decoder-only MusicTransformer, built only from its ModelConfig (nanoGPT style).

Token embedding (+ learned absolute positions when the position scheme asks for them: `absolute_table`;
+ the embeddings of the tokens just before, one table per distance, with `previous_tokens`), pre-norm blocks
of causal self-attention and an MLP, a final LayerNorm and an output head tied to the token embedding.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from musicmha.nn.attention import KVCache, MultiHeadAttention
from musicmha.nn.config import MAX_PREVIOUS_TOKENS, ModelConfig
from musicmha.nn.positions import PositionScheme, position_scheme_type
from musicmha.errors import CheckpointError
from musicmha.files import CONFIG_FILE, WEIGHTS_FILE

logger = logging.getLogger(__name__)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attn = MultiHeadAttention(
            config.d_model, config.n_heads, position=config.position,
            max_relative_distance=config.max_relative_distance, causal=True, dropout=config.dropout,
            bias=config.bias, rope_base=config.rope_base, backend=config.attention_backend,
            relative_buckets=config.relative_buckets)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None, start_pos: int) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), kv_cache=kv_cache, start_pos=start_pos))
        return x + self.mlp(self.norm2(x))


class MusicTransformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # the scheme's class, for what the whole model must do about positions (each attention has its module)
        self.position_scheme: type[PositionScheme] = position_scheme_type(config.position)
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        # Why: copying what followed an earlier occurrence of what was just heard (an induction head) takes two
        # attention layers that must find each other, which language models learn only late in training and
        # our music runs never did. With the tokens before each position in its input, one layer's keys
        # already say "what came before me", and a query can match them directly (Olsson et al.'s smeared
        # keys, here at the input); several distances make the match specific (one token recurs by chance).
        self.previous_embeddings = nn.ModuleList(nn.Embedding(config.vocab_size, config.d_model)
                                                 for _ in range(config.previous_tokens))
        if self.position_scheme.absolute_table:
            self.position_embedding = nn.Embedding(config.max_seq_len, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied: one matrix, read and written both ways
        self.apply(self._init_weights)
        for table in self.previous_embeddings:  # zero: a model starts (or warm-starts) as if it had none
            nn.init.zeros_(table.weight)
        # GPT-2: residual output projections scaled down with depth so the residual stream stays O(1).
        for name, param in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "mlp.down.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def tie_weights(self) -> None:
        """Make the output head read the embedding matrix again. A move to or from the meta device makes a new
        Parameter per module and so unties them; FSDP2's memory-saving load (accelerate's
        cpu_ram_efficient_loading) does that move and then calls this method, as it does for transformers
        models. `_apply` calls it too, after every `.to()`."""
        self.lm_head.weight = self.token_embedding.weight

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        super()._apply(fn, recurse)
        if self.lm_head.weight is not self.token_embedding.weight:
            self.tie_weights()
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None, *,
                kv_cache: list[KVCache] | None = None, start_pos: int = 0,
                loss_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens (B, T) -> logits (B, T, V) and, given targets (B, T), the mean cross-entropy loss
        (targets equal to -100 are ignored), or with loss_weights (B, T) the weighted mean sum(w * nll) /
        sum(w) over the targets not ignored (training's copy weighting, musicmha/data/copy_targets.py).
        With kv_cache, tokens sit at start_pos .. start_pos + T - 1."""
        batch, length = tokens.shape
        if start_pos + length > self.config.max_seq_len and not self.position_scheme.extrapolates:
            raise ValueError(f"position {start_pos + length} is past max_seq_len={self.config.max_seq_len}"
                             f" (position={self.config.position!r} stops there)")
        if kv_cache is not None and len(kv_cache) != len(self.blocks):
            raise ValueError(f"kv_cache has {len(kv_cache)} layers, the model {len(self.blocks)}")
        x = self.token_embedding(tokens)  # (B, T, C)
        if self.config.previous_tokens:
            x = x + self._previous_token_embeddings(tokens, kv_cache, start_pos)
        if self.position_scheme.absolute_table:
            positions = torch.arange(start_pos, start_pos + length, device=tokens.device)
            x = x + self.position_embedding(positions)
        x = self.dropout(x)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache[i] if kv_cache is not None else None, start_pos)
        logits = self.lm_head(self.final_norm(x))  # (B, T, V)
        loss = None
        if targets is not None and loss_weights is None:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=-100)
        elif targets is not None:
            nll = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1),
                                  ignore_index=-100, reduction="none")  # 0 at ignored targets
            weights = loss_weights.reshape(-1).float() * (targets.reshape(-1) != -100)
            loss = (nll * weights).sum() / weights.sum().clamp_min(1e-9)
        return logits, loss

    def _previous_token_embeddings(self, tokens: torch.Tensor, kv_cache: list[KVCache] | None,
                                   start_pos: int) -> torch.Tensor:
        """(B, T, C): the sum over k = 1..previous_tokens of the k-th table's embedding of the token k places
        before each position, zero where there is none (before a window's start). With a cache, the tokens
        before `start_pos` are the last ones the cache was fed."""
        batch, length = tokens.shape
        before = tokens.new_full((batch, MAX_PREVIOUS_TOKENS), -1)
        if kv_cache is not None and start_pos > 0:
            before = kv_cache[0].last_tokens
        history = torch.cat([before, tokens], dim=1)  # (B, MAX + T): token t sits at MAX + t
        if kv_cache is not None:
            kv_cache[0].last_tokens.copy_(history[:, -MAX_PREVIOUS_TOKENS:])
        out = torch.zeros(batch, length, self.config.d_model, dtype=self.token_embedding.weight.dtype,
                          device=tokens.device)
        for k, table in enumerate(self.previous_embeddings, start=1):
            previous = history[:, MAX_PREVIOUS_TOKENS - k:MAX_PREVIOUS_TOKENS - k + length]  # (B, T)
            out = out + table(previous.clamp_min(0)) * (previous >= 0).unsqueeze(-1).to(out.dtype)
        return out

    def new_kv_cache(self, batch_size: int, max_len: int | None = None) -> list[KVCache]:
        """One static KVCache per layer, in the model's dtype and device, for up to max_len positions."""
        param = self.token_embedding.weight
        max_len = max_len or self.config.max_seq_len
        return [KVCache(batch_size, self.config.n_heads, max_len, self.config.head_dim,
                        dtype=param.dtype, device=param.device) for _ in self.blocks]

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config.json and model.safetensors (each atomically) into `folder`."""
        from safetensors.torch import save_model

        from musicmha.atomic_files import write_atomic

        folder = Path(folder)
        write_atomic(folder / WEIGHTS_FILE,
                     lambda tmp: save_model(self, str(tmp), metadata={"format": "pt"}))
        self.config.save(folder / CONFIG_FILE)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None) -> MusicTransformer:
        """Load a folder written by save_pretrained. Weights stored in fp16/bf16 are restored to fp32
        unless `dtype` says otherwise. Never unpickles anything."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_model

        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: checkpoint folder not found")
        config = ModelConfig.load(folder / CONFIG_FILE)
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise CheckpointError(f"{weights}: file not found")
        # Shapes first, on the meta device (no memory): a config.json that disagrees with the weights, or
        # names an impossible size, must be an error naming both files, not a failed 128 TB allocation.
        with torch.device("meta"):
            expected = {k: list(v.shape) for k, v in cls(config).state_dict().items()}
        try:
            with safe_open(str(weights), "pt") as stored:
                for key in stored.keys():
                    shape = list(stored.get_slice(key).get_shape())
                    if key in expected and expected[key] != shape:
                        raise CheckpointError(f"{weights}: weights do not match {folder / CONFIG_FILE} ({key} has "
                                              f"shape {shape}, the config implies {expected[key]})")
            model = cls(config)
            load_model(model, str(weights), strict=True)
        except SafetensorError as error:
            raise CheckpointError(f"{weights}: not a readable safetensors file ({error})") from None
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()
            detail = " ".join(line.strip() for line in first_line[:3])
            raise CheckpointError(f"{weights}: weights do not match {folder / CONFIG_FILE} ({detail})") \
                from None
        model.to(device=device, dtype=dtype)
        model.eval()
        logger.info("loaded %s (%s parameters, position=%s)", folder, f"{model.num_parameters():,}",
                    config.position)
        return model
