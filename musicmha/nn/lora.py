"""Low-rank adapters (LoRA, Hu et al. 2021) for fine-tuning a trained MusicTransformer on a small corpus.

Each target `nn.Linear` (attention q/k/v/out projections, MLP up/down) becomes `LoRALinear`: the frozen
base weight W plus a trainable update (alpha / rank) · B·A, with A (rank × in) random and B (out × rank)
zero, so training starts from the base model exactly. Merging folds the update into W, which gives an
ordinary model that loads anywhere. An adapter folder holds only A and B (`adapter.safetensors`) and
`adapter.json` naming its base checkpoint, so a musician's fine-tune is a few hundred kB beside the base.
Writing whole checkpoint folders (a run's export, `musicmha merge-lora`) is training's: musicmha.training.export.

Our own ~150 lines rather than `peft`: peft wraps Hugging Face models and would add transformers-sized
dependencies for six Linear layers per block.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from musicmha.errors import CheckpointError, ConfigError
from musicmha.files import ADAPTER_CONFIG, ADAPTER_WEIGHTS

# Every Linear of a block: attention projections and the MLP. (The tied embedding/output matrix stays frozen.)
DEFAULT_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj", "up", "down")


@dataclass
class LoRAConfig:
    rank: int
    alpha: float = 0.0  # 0 means 2 * rank (an update scale of 2)
    targets: tuple[str, ...] = DEFAULT_TARGETS
    base: str = ""  # the checkpoint folder the adapter belongs to

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = tuple(t.strip() for t in self.targets.split(",") if t.strip())
        self.targets = tuple(self.targets)
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ConfigError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha < 0:
            raise ConfigError(f"LoRA alpha must be >= 0 (0 means 2 x rank), got {self.alpha!r}")
        if self.alpha == 0:
            self.alpha = 2.0 * self.rank
        if not self.targets:
            raise ConfigError("LoRA needs at least one target module (e.g. q_proj,v_proj)")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, scale: float) -> None:
        super().__init__()
        if rank > min(base.in_features, base.out_features):
            raise ConfigError(f"LoRA rank {rank} is larger than the layer it adapts "
                              f"({base.out_features} x {base.in_features})")
        self.base, self.scale = base, scale
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initializes its weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + (self.lora_b @ self.lora_a) * self.scale


def add_adapters(model: nn.Module, config: LoRAConfig) -> int:
    """Freeze every weight of `model` and wrap its target Linear layers; returns the trainable parameter count."""
    for param in model.parameters():
        param.requires_grad_(False)
    wrapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name in config.targets and isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(child, config.rank, config.scale))
                wrapped += 1
    if not wrapped:
        raise ConfigError(f"LoRA: the model has no module named {', '.join(config.targets)} "
                          f"(targets are among {', '.join(DEFAULT_TARGETS)})")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the LoRA matrices, by their names in `model`."""
    return {name: p.detach().clone().contiguous() for name, p in model.named_parameters() if ".lora_" in name}


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the plain model: every LoRALinear's update folded into its base weight."""
    merged = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            merged[f"{name}.weight"] = module.merged_weight().detach()
    state = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        plain = key.replace(".base.", ".")
        state[plain] = merged.get(plain, value)
    return state


def merged_model(model: nn.Module) -> nn.Module:
    """A plain model of the same class and config (no LoRALinear left), its weights `merged_state(model)`."""
    plain = type(model)(model.config)
    plain.load_state_dict(merged_state(model), strict=True)
    return plain


def save_adapter(model: nn.Module, config: LoRAConfig, folder: Path) -> None:
    """`folder/adapter.safetensors` + `folder/adapter.json` (rank, alpha, targets, base checkpoint)."""
    from safetensors.torch import save_file

    from musicmha.atomic_files import write_atomic, write_text_atomic

    folder = Path(folder)
    write_atomic(folder / ADAPTER_WEIGHTS, lambda tmp: save_file(adapter_state(model), str(tmp)))
    write_text_atomic(folder / ADAPTER_CONFIG, json.dumps(asdict(config), indent=2) + "\n")


def load_adapter_config(folder: Path) -> LoRAConfig:
    from musicmha.atomic_files import read_json

    data = read_json(Path(folder) / ADAPTER_CONFIG)
    try:
        return LoRAConfig(**data)
    except (TypeError, ConfigError) as error:
        raise CheckpointError(f"{Path(folder) / ADAPTER_CONFIG}: {error}") from None


def apply_adapter(model: nn.Module, folder: Path) -> LoRAConfig:
    """Wrap `model` as the adapter in `folder` says and load its matrices (strictly: every one must match)."""
    from safetensors.torch import load_file

    config = load_adapter_config(folder)
    add_adapters(model, config)
    weights = Path(folder) / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: file not found")
    stored = load_file(str(weights))
    expected = adapter_state(model)
    if set(stored) != set(expected) or any(stored[k].shape != expected[k].shape for k in stored):
        raise CheckpointError(f"{weights}: the adapter does not fit its base model {config.base}")
    model.load_state_dict(stored, strict=False)
    return config
