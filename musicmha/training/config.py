"""Training configuration: presets, a config file (YAML or JSON), and command-line overrides.

Precedence: preset < config file < explicit flags. The resolved configuration is saved in the run folder
(`train_config.json`) and a resumed run checks it is continuing the same experiment.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicmha.data.part_rows import LAYOUTS as PART_LAYOUTS
from musicmha.nn.config import ModelConfig
from musicmha.errors import ConfigError
from musicmha.files import CONFIG_FILE

# Model and optimisation sizes per preset; each is a complete recipe, not just a model shape.
PRESETS: dict[str, dict[str, Any]] = {
    # seconds on a CPU: for tests and smoke runs
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, max_seq_len=128, batch_size=8, learning_rate=2e-3,
                 warmup_steps=10, max_steps=200, dropout=0.0),
    # about an hour on a laptop CPU (~3.4M parameters, 4k tokens a step)
    "small": dict(d_model=256, n_layers=4, n_heads=4, max_seq_len=256, batch_size=16, learning_rate=1e-3,
                  warmup_steps=100, max_steps=2000, dropout=0.1),
    # a GPU (~25M parameters)
    "base": dict(d_model=512, n_layers=8, n_heads=8, max_seq_len=1024, batch_size=32, learning_rate=6e-4,
                 warmup_steps=1000, max_steps=50000, dropout=0.1),
    # the default with --init-from: the model's shape comes from the checkpoint; a gentler learning rate and
    # a short run with early stopping, for the tens of files a musician has (see docs/results.md)
    "finetune": dict(batch_size=8, learning_rate=3e-4, warmup_steps=20, max_steps=600, dropout=0.1,
                     eval_every=25, early_stop=4),
}
LORA_LEARNING_RATE = 1e-3
SHAPE_FIELDS = ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len", "position", "max_relative_distance",
                "relative_buckets", "rope_base", "bias")

MODEL_FIELDS = ("d_model", "n_layers", "n_heads", "d_ff", "dropout", "max_seq_len", "position",
                "max_relative_distance", "relative_buckets", "rope_base", "bias", "previous_tokens",
                "attention_backend")
# Fields a run may switch on over a checkpoint without it (--init-from): the new weights start at zero, so the
# model starts as the checkpoint's function.
GROWABLE_FIELDS = ("previous_tokens",)
MIXED_PRECISION = ("no", "bf16", "fp16")


_FROM_PRESET = "the preset's, or the checkpoint's with --init-from"


def option(default: Any, help: str, *, choices: Sequence[str] | None = None, shown: str | None = None,
           metavar: str | None = None) -> Any:
    """A TrainConfig field with its documentation, the one place `musicmha train --help` reads it from: a
    line of help, the fixed choices if any, and for a default of None (filled in later from the preset or
    the checkpoint) or "" (required) what the flag means when it is not given."""
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None,
                "shown": shown, "metavar": metavar}
    return field(default=default, metadata=metadata)


def model_option(name: str, shown: str = _FROM_PRESET) -> Any:
    """A ModelConfig field exposed as a training option: None by default (the preset or the checkpoint fills
    it in); its help and choices are ModelConfig's own (musicmha/nn/config.py)."""
    doc = ModelConfig.__dataclass_fields__[name].metadata
    return option(None, doc["help"], choices=doc.get("choices"), shown=shown)


@dataclass
class TrainConfig:
    data: str = option("", "prepared token folder (from `musicmha prepare`)", shown="required", metavar="FOLDER")
    out: str = option("", "run folder: checkpoints in state/, the exported model in model/", shown="required",
                      metavar="FOLDER")
    preset: str | None = option(None, "a complete recipe of model size and optimisation; options override it",
                                choices=PRESETS, shown="tiny, or finetune with --init-from")
    init_from: str | None = option(None, "an exported model folder to start from (fine-tuning): its shape, "
                                   "weights and tokenizer", shown="none: a new model", metavar="FOLDER")
    lora_rank: int = option(0, "> 0: train low-rank adapters of this rank, the base frozen (needs --init-from); "
                            "0: train every weight")
    lora_alpha: float = option(0.0, "adapter scale alpha/rank; 0 means 2 x rank")
    lora_targets: str = option("q_proj,k_proj,v_proj,out_proj,up,down",
                               "comma-separated linear layers that get adapters", metavar="NAMES")
    # model (defaults come from the preset)
    d_model: int | None = model_option("d_model")
    n_layers: int | None = model_option("n_layers")
    n_heads: int | None = model_option("n_heads")
    d_ff: int | None = model_option("d_ff", "4 x d_model, or the checkpoint's with --init-from")
    dropout: float | None = model_option("dropout")
    max_seq_len: int | None = model_option("max_seq_len")
    position: str | None = model_option("position", "relative, or the checkpoint's with --init-from")
    max_relative_distance: int | None = model_option("max_relative_distance",
                                                     "max_seq_len - 1, or the checkpoint's with --init-from")
    relative_buckets: int | None = model_option("relative_buckets", "0, or the checkpoint's with --init-from")
    rope_base: float | None = model_option("rope_base", "10000, or the checkpoint's with --init-from")
    bias: bool | None = model_option("bias", "false, or the checkpoint's with --init-from")
    previous_tokens: int | None = model_option("previous_tokens", "0, or the checkpoint's with --init-from (which "
                                               "a run may raise: the new tables start at zero)")
    # how attention is computed (auto, sdpa, blocked, flex): speed only, the weights are the same function;
    # None means "auto". Not a shape field: a run may switch it on --resume, and exports record "auto".
    attention_backend: str | None = model_option("attention_backend", "auto")
    # optimisation
    batch_size: int | None = option(None, "sequences per process and per micro-step", shown="the preset's")
    grad_accum: int = option(1, "micro-steps accumulated into each optimizer step")
    learning_rate: float | None = option(None, "peak learning rate, reached at the end of the warmup",
                                         shown=f"the preset's; {LORA_LEARNING_RATE:g} with --lora-rank")
    min_lr_ratio: float = option(0.1, "the cosine decay ends at this fraction of the peak learning rate")
    warmup_steps: int | None = option(None, "steps of linear warmup to the peak learning rate",
                                      shown="the preset's")
    max_steps: int | None = option(None, "optimizer steps of the whole run (--resume continues up to it)",
                                   shown="the preset's")
    decay_steps: int | None = option(None, "length of the cosine schedule in steps (plans a run in several "
                                     "parts)", shown="max_steps")
    weight_decay: float = option(0.1, "AdamW weight decay of the weight matrices (not norms, biases or "
                                 "position tables)")
    beta1: float = option(0.9, "AdamW beta1 (first moment decay)")
    beta2: float = option(0.95, "AdamW beta2 (second moment decay)")
    grad_clip: float = option(1.0, "clip the gradient norm to this; 0: no clipping")
    mixed_precision: str | None = option(None, "autocast precision of the forward pass", choices=MIXED_PRECISION,
                                         shown="what `accelerate launch` / accelerate config says")
    compile: bool = option(False, "torch.compile the model (faster steps on a GPU after a slow first one)")
    fim_rate: float = option(0.0, "fraction of training windows rearranged for fill-in-the-middle "
                             "(musicmha/data/fim.py)")
    reprise_rate: float = option(0.0, "fraction of training windows made into A A B…, their opening bars "
                                 "repeated, to teach copying from far back (musicmha/data/reprise.py)")
    copy_weight: float = option(1.0, "loss weight of the targets whose previous --copy-min-match tokens occurred "
                                "earlier in the window (a copy is possible: musicmha/data/copy_targets.py); "
                                "1: every target alike")
    copy_min_match: int = option(16, "tokens of an earlier exact repeat that make a target a copy target")
    part_rate: float = option(0.0, "fraction of training windows made into part rows: one part written again "
                              "beside the other parts, as add_part writes it (musicmha/data/part_rows.py)")
    part_layout: str = option("lead", "how a part row lays the part out: lead (the others a bar ahead) or after "
                              "(the part after the others)", choices=PART_LAYOUTS)
    condition_dropout: float = option(0.3, "with a tokenizer that has style and density tokens: the share of "
                                      "windows trained without each of them (musicmha/data/conditioning.py)")
    # bookkeeping
    seed: int = option(0, "seed of the initial weights, the batches and dropout")
    save_every: int = option(100, "write a checkpoint (state/step-N) every this many steps; without "
                             "--early-stop, export model/ too")
    keep_last: int = option(3, "checkpoints kept in state/, the newest")
    eval_every: int | None = option(None, "compute the validation NLL every this many steps",
                                    shown="the preset's, else 100")
    early_stop: int | None = option(None, "stop after this many evaluations without a better validation NLL "
                                    "(model/ then holds the best); 0: never", shown="the preset's, else 0")
    eval_batches: int = option(8, "validation batches per evaluation")
    log_every: int = option(10, "log the loss, learning rate and speed every this many steps")
    tensorboard: bool = option(False, "log to TensorBoard in the run folder")
    resume: bool = option(False, "continue the run in --out from its newest checkpoint")

    def __post_init__(self) -> None:
        if self.preset is None:
            self.preset = "finetune" if self.init_from else "tiny"
        if self.preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.init_from:
            self._take_shape_from_checkpoint()
        elif self.preset == "finetune" or self.lora_rank:
            raise ConfigError("the finetune preset and --lora-rank start from a trained model: give --init-from")
        if self.lora_rank and self.learning_rate is None:
            # Adapters start at zero and move a few weights: at the full fine-tune's 3e-4 they barely move
            # (docs/results.md, "Fine-tuning on your own MIDI": 1e-3 cut test NLL by 0.63 nats at equal steps).
            self.learning_rate = LORA_LEARNING_RATE
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.position = self.position or "relative"
        self.eval_every = 100 if self.eval_every is None else self.eval_every
        self.early_stop = 0 if self.early_stop is None else self.early_stop
        if not isinstance(self.early_stop, int) or self.early_stop < 0:
            raise ConfigError(f"early_stop must be an integer >= 0, got {self.early_stop!r}")
        if self.lora_rank:
            self.lora_config()  # validates rank, alpha and targets now
        if not self.data or not self.out:
            raise ConfigError("both data (a prepared token folder) and out (the run folder) are required")
        positive = ("batch_size", "grad_accum", "max_steps", "save_every", "keep_last", "eval_every",
                    "eval_batches", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.decay_steps is not None and (not isinstance(self.decay_steps, int) or self.decay_steps < 1):
            raise ConfigError(f"decay_steps must be a positive integer, got {self.decay_steps!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ConfigError(f"learning_rate must be in (0, 1), got {self.learning_rate!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("grad_clip and weight_decay must be >= 0")
        if not isinstance(self.fim_rate, (int, float)) or not 0.0 <= self.fim_rate <= 1.0:
            raise ConfigError(f"fim_rate must be in [0, 1], got {self.fim_rate!r}")
        if not isinstance(self.reprise_rate, (int, float)) or not 0.0 <= self.reprise_rate <= 1.0:
            raise ConfigError(f"reprise_rate must be in [0, 1], got {self.reprise_rate!r}")
        if not isinstance(self.part_rate, (int, float)) or not 0.0 <= self.part_rate <= 1.0:
            raise ConfigError(f"part_rate must be in [0, 1], got {self.part_rate!r}")
        if self.part_layout not in PART_LAYOUTS:
            raise ConfigError(f"part_layout must be one of {', '.join(PART_LAYOUTS)}, got {self.part_layout!r}")
        if not isinstance(self.copy_weight, (int, float)) or not 0 < self.copy_weight <= 100:
            raise ConfigError(f"copy_weight must be in (0, 100], got {self.copy_weight!r}")
        if not isinstance(self.copy_min_match, int) or self.copy_min_match < 1:
            raise ConfigError(f"copy_min_match must be a positive integer, got {self.copy_min_match!r}")
        if not isinstance(self.condition_dropout, (int, float)) or not 0.0 <= self.condition_dropout <= 1.0:
            raise ConfigError(f"condition_dropout must be in [0, 1], got {self.condition_dropout!r}")
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                              f"got {self.mixed_precision!r}")
        self.model_config(vocab_size=1)  # validates the model part now, before any work starts
        if self.attention_backend == "flex" and self.dropout > 0:
            raise ConfigError(f"attention_backend flex has no attention dropout: set dropout 0 (it is {self.dropout}), "
                              "or use attention_backend blocked or sdpa")

    def _take_shape_from_checkpoint(self) -> None:
        """The model's shape is the checkpoint's: fill it in, and refuse flags that contradict it."""
        folder = Path(self.init_from)
        if not (folder / CONFIG_FILE).is_file():
            raise ConfigError(f"--init-from {folder}: not a checkpoint folder (no {CONFIG_FILE}; expected an "
                              "exported model such as checkpoints/musicmha-small or runs/NAME/model)")
        shape = ModelConfig.load(folder / CONFIG_FILE).to_dict()
        clashes = [f"{name}={getattr(self, name)!r} (the checkpoint has {shape[name]!r})" for name in SHAPE_FIELDS
                   if getattr(self, name) is not None and getattr(self, name) != shape[name]]
        if clashes:
            raise ConfigError(f"--init-from {folder}: options contradict the checkpoint's shape: {', '.join(clashes)}")
        for name in SHAPE_FIELDS:
            setattr(self, name, shape[name])
        for name in GROWABLE_FIELDS:
            had = shape.get(name, 0)
            if getattr(self, name) is None:
                setattr(self, name, had)
            elif getattr(self, name) < had:
                raise ConfigError(f"--init-from {folder}: the checkpoint has {name}={had}; a run may raise it, "
                                  f"not lower it (asked {getattr(self, name)})")
        if self.dropout is None:
            self.dropout = shape["dropout"]

    def lora_config(self):
        from musicmha.nn.lora import LoRAConfig

        if self.lora_rank and self.lora_rank > self.d_model:
            raise ConfigError(f"lora_rank {self.lora_rank} is larger than the model width {self.d_model}")
        return LoRAConfig(rank=self.lora_rank, alpha=self.lora_alpha, targets=self.lora_targets,
                          base=str(Path(self.init_from).resolve()) if self.init_from else "")

    def model_config(self, vocab_size: int) -> ModelConfig:
        values = {name: getattr(self, name) for name in MODEL_FIELDS if getattr(self, name) is not None}
        return ModelConfig(vocab_size=vocab_size, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_sources(cls, file: str | Path | None = None, **overrides: Any) -> TrainConfig:
        """Preset < file (YAML or JSON) < overrides whose value is not None."""
        values: dict[str, Any] = {}
        if file is not None:
            values.update(load_config_file(Path(file)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            where = f"{file}: " if file is not None else ""
            raise ConfigError(f"{where}unknown training option(s) {', '.join(unknown)}")
        return cls(**values)


def load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:  # yaml and json raise different types; both mean a malformed file
        raise ConfigError(f"{path}: cannot parse ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return {key.replace("-", "_"): value for key, value in data.items()}
