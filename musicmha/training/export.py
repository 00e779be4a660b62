"""Writing a trained model as an inference checkpoint: a run's export, `model/` (config.json, model.safetensors,
tokenizer.json, training.json) and for a LoRA run its adapter alone in `adapter/` beside it; and `musicmha
merge-lora`, an adapter folded into its base. Both merge the same way (nn.lora.merged_model) and write through
checkpoint.save; every folder is written under a temporary name and renamed when complete
(atomic_files.atomic_directory).
"""

from __future__ import annotations

from pathlib import Path

from musicmha import checkpoint
from musicmha.atomic_files import atomic_directory
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.errors import CheckpointError
from musicmha.files import ADAPTER_CONFIG
from musicmha.nn.lora import apply_adapter, load_adapter_config, merged_model, save_adapter
from musicmha.nn.model import MusicTransformer
from musicmha.training.config import TrainConfig

ADAPTER_DIR = "adapter"  # a LoRA run's adapter alone, beside the merged model in model/


def export(model, tokenizer, folder: Path, *, cfg: TrainConfig, step: int, tokens_seen: int,
           train_loss: float, validation_nll: float, num_processes: int = 1) -> None:
    """The inference folder: config.json, model.safetensors, tokenizer.json, training.json, atomically."""
    if cfg.lora_rank:  # the adapter alone beside the run's model folder, then the merged model as usual
        adapter = folder.parent / ADAPTER_DIR
        with atomic_directory(adapter) as staging:
            save_adapter(model, cfg.lora_config(), staging)
            tokenizer.save(staging)
        model = merged_model(model)
    # checkpoint.save writes the config with backend "auto": an exported model picks its own on the device
    # that loads it (training.json keeps the run's choice)
    info = {"data": str(Path(cfg.data).resolve()), "steps": step, "tokens_seen": tokens_seen,
            "final_train_loss": train_loss, "final_validation_nll": validation_nll,
            "preset": cfg.preset, "seed": cfg.seed, "num_processes": num_processes,
            "init_from": str(Path(cfg.init_from).resolve()) if cfg.init_from else None,
            "lora_rank": cfg.lora_rank,
            "train_config": cfg.to_dict()}
    checkpoint.save(folder, model, tokenizer, training=info)


def merge_adapter(adapter: str | Path, out: str | Path, base: str | Path | None = None) -> Path:
    """`musicmha merge-lora`: write a full checkpoint folder `out`, the base model with the adapter folded in
    and the base's tokenizer. `base` defaults to the checkpoint adapter.json names."""
    config = load_adapter_config(adapter)
    base = base or config.base
    if not base:
        raise CheckpointError(f"{Path(adapter) / ADAPTER_CONFIG} names no base checkpoint: pass --base")
    model = MusicTransformer.from_pretrained(base)
    apply_adapter(model, adapter)
    return checkpoint.save(out, merged_model(model), MusicTokenizer.load(base))
