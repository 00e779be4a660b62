"""Our LoRA module against peft's, side by side on the shipped model: trainable parameters, whether both
start exactly at the base model, and the time of a training step (forward + backward + AdamW on 8 x 256
random tokens, rank 8 on every attention projection and the MLP), rounds alternating.

    pip install peft    # not a musicmha dependency: only this comparison needs it
    python benchmarks/lora_vs_peft.py
"""
import copy
import time

import torch
from peft import LoraConfig, get_peft_model

from musicmha import MusicTransformer
from musicmha.nn.lora import LoRAConfig, add_adapters

torch.set_num_threads(2)
base = MusicTransformer.from_pretrained("checkpoints/musicmha-small")
base.train()
targets = ["q_proj", "k_proj", "v_proj", "out_proj", "up", "down"]
ours = copy.deepcopy(base)
n_ours = add_adapters(ours, LoRAConfig(rank=8, alpha=16))
theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0))
n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
x = torch.randint(0, base.config.vocab_size, (8, 257))
with torch.no_grad():
    ref = base.eval()(x[:, :-1])[0]
    same_ours = (ours.eval()(x[:, :-1])[0] - ref).abs().max().item()
    same_theirs = (theirs.eval()(x[:, :-1])[0] - ref).abs().max().item()


def timed(model, steps=6):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step():
        _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


rounds = {"ours": [], "peft": []}
for _ in range(3):
    rounds["ours"].append(timed(ours)); rounds["peft"].append(timed(theirs))
print("| module | trainable params | start = base (max logit diff) | step s (median of 3 rounds x 6) |")
print("|---|---:|---:|---:|")
for name, n, same in (("ours (musicmha/nn/lora.py)", n_ours, same_ours), ("peft 0.21.2", n_theirs, same_theirs)):
    key = "ours" if name.startswith("ours") else "peft"
    print(f"| {name} | {n:,} | {same:.1e} | {sorted(rounds[key])[1]:.3f} |")
