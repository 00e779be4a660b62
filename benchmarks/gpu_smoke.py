"""The first-GPU smoke test: one command, about 10 minutes on one H200, a pass/fail report and timing tables.

    python benchmarks/gpu_smoke.py --out smoke/            # CUDA (the default device when there is one)
    python benchmarks/gpu_smoke.py --device cpu --quick --out smoke/   # CI: the same code paths, small sizes

Writes OUT/smoke.json ({"environment", "checks": [{"name", "passed", ...}], "tables"}) and OUT/smoke.md.
Checks: kernel parity of sdpa / blocked / flex against tests/reference.py (its explicit per-head loops at
L = 200; at 1,024 and 2,048 a dense float64 form of the same Shaw et al. formula, itself checked against
it at 200) in fp32 with TF32 off and in bf16, with peak memory at 4,096; 50 training steps per backend in
fp32 and bf16 against CPU losses, eager and compiled (graph breaks counted); cached vs uncached greedy
generation for every position mode, past a window slide; the shipped model's logits on the device vs the
CPU. Tables: attention times, training tokens/s and MFU, decode tokens/s at batch 1 and 4 with host
syncs counted (CUDA's sync debug mode; the design is 1 per token, the new tokens' copy to the host) for
plain greedy `generate` and for the app's `continue_midi` path (grammar, seeds, bars, EOS, callback).
A check that raises is a failed check, and the rest still run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/reference.py

from reference import naive_attention  # noqa: E402

from musicmha import ModelConfig, MultiHeadAttention, MusicTransformer  # noqa: E402
from musicmha.generation.options import SamplingOptions  # noqa: E402
from musicmha.generation.sampling import generate  # noqa: E402

GREEDY = SamplingOptions(top_k=1)

BACKENDS = ("sdpa", "blocked", "flex")
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}  # dense, per GPU (vendor figures)


class Smoke:
    def __init__(self, device: torch.device, quick: bool, skip_compile: bool = False) -> None:
        self.device, self.quick, self.skip_compile = device, quick, skip_compile
        self.seconds: dict[str, float] = {}
        self.cuda = device.type == "cuda"
        self.checks: list[dict] = []
        self.tables: dict[str, list[dict]] = {}

    def check(self, name: str, passed: bool, **detail) -> None:
        self.checks.append({"name": name, "passed": bool(passed), **detail})

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def run(self, section, *args) -> None:
        started = time.perf_counter()
        try:
            section(self, *args)
        except Exception as error:  # one broken section must not hide the others' results
            self.check(f"{section.__name__}{args!r}: ran", False, error=f"{type(error).__name__}: {error}",
                       traceback=traceback.format_exc()[-2000:])
        self.seconds[section.__name__] = round(time.perf_counter() - started, 1)
        print(f"{section.__name__}: {self.seconds[section.__name__]} s", flush=True)


def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "cpu_threads": torch.get_num_threads(), "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "bf16": torch.cuda.is_bf16_supported()}
    env["flex_attention"] = importlib.util.find_spec("torch.nn.attention.flex_attention") is not None
    return env


def dense_reference(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax((QKᵀ + q_i·E[clip(i-j)]) / sqrt(D)) V, causal, in float64: the formula of tests/reference.py
    without its Python loops (the skew of musicmha.nn.positions is not used)."""
    m = {k: v.double() for k, v in mha.state_dict().items()}
    x = x.double()
    batch, length, _ = x.shape
    split = lambda t: t.view(batch, length, mha.n_heads, mha.head_dim).transpose(1, 2)  # noqa: E731
    q, k, v = (split(x @ m[f"{n}_proj.weight"].T + m.get(f"{n}_proj.bias", 0)) for n in "qkv")
    pos = torch.arange(length, device=x.device)
    distance = (pos[:, None] - pos[None, :]).clamp(0, mha.max_relative_distance)
    table = m["scheme.relative_embeddings"]  # (H, R+1, D)
    relative = torch.einsum("bhid,hijd->bhij", q, table[:, distance]) if length <= 1024 else torch.stack(
        [torch.einsum("bid,ijd->bij", q[:, h], table[h, distance]) for h in range(mha.n_heads)], 1)
    logits = (q @ k.transpose(-1, -2) + relative) / math.sqrt(mha.head_dim)
    logits = logits.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    out = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(batch, length, -1)
    return out @ m["out_proj.weight"].T + m.get("out_proj.bias", 0)


def kernel_parity(s: Smoke) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 parity means fp32 products
    lengths = (64, 200) if s.quick else (200, 1024, 2048)
    d_model, heads = (64, 2) if s.quick else (256, 4)
    for length in lengths:
        torch.manual_seed(length)
        mha = MultiHeadAttention(d_model, heads, position="relative", max_relative_distance=length - 1,
                                 bias=False).to(s.device)
        x = torch.randn(1, length, d_model, device=s.device)
        with torch.no_grad():
            reference = dense_reference(mha, x)
            if length == 200:  # the dense form against the loops of tests/reference.py, once
                loops = naive_attention(mha.double().cpu(), x.double().cpu()).to(s.device)
                mha.float().to(s.device)
                s.check(f"dense reference = tests/reference.py, L={length}", (loops - reference).abs().max() < 1e-9)
        scale = reference.abs().max().item()
        for backend in BACKENDS:
            if backend == "flex" and not s.cuda and length > 200:
                continue  # eager flex on the CPU builds full L x L scores: slow and not what CUDA runs
            mha.backend = backend
            for dtype, tol in ((torch.float32, 2e-5), (torch.bfloat16, 3e-2)):
                with torch.no_grad(), torch.autocast(s.device.type, dtype=dtype, enabled=dtype != torch.float32):
                    out = mha(x).double()
                err = (out - reference).abs().max().item() / scale
                s.check(f"parity {backend} {str(dtype)[6:]} L={length}", err < tol, relative_error=err)
        if s.cuda:
            peak_memory(s, d_model, heads)
    torch.backends.cuda.matmul.allow_tf32 = True


def peak_memory(s: Smoke, d_model: int, heads: int, length: int = 4096) -> None:
    if any(r.get("length") == length for r in s.tables.get("attention peak memory", [])):
        return
    rows = s.tables.setdefault("attention peak memory", [])
    for backend in BACKENDS:
        mha = MultiHeadAttention(d_model, heads, position="relative", max_relative_distance=length - 1,
                                 backend=backend, bias=False).to(s.device, torch.bfloat16)
        x = torch.randn(1, length, d_model, device=s.device, dtype=torch.bfloat16, requires_grad=True)
        for mode in ("no_grad", "forward+backward"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(s.device)
            base = torch.cuda.memory_allocated(s.device)
            if mode == "no_grad":
                with torch.no_grad():
                    mha(x)
            else:
                mha(x).sum().backward()
            s.sync()
            rows.append({"backend": backend, "length": length, "mode": mode,
                         "peak_mib": round((torch.cuda.max_memory_allocated(s.device) - base) / 2**20, 1)})


def _tiny_lm(s: Smoke, backend: str, position: str = "relative") -> ModelConfig:
    size = dict(d_model=64, n_layers=2, n_heads=4, max_seq_len=64) if s.quick else \
        dict(d_model=256, n_layers=4, n_heads=8, max_seq_len=256)
    return ModelConfig(vocab_size=128, dropout=0.0, position=position, attention_backend=backend, **size)


def _batches(config: ModelConfig, steps: int, batch: int = 8) -> list[torch.Tensor]:
    """Learnable token streams (a few repeated motifs with noise), the same on every device."""
    g = torch.Generator().manual_seed(0)
    motifs = torch.randint(3, config.vocab_size, (16, 8), generator=g)
    out = []
    for _ in range(steps):
        picks = torch.randint(0, 16, (batch, (config.max_seq_len + 1) // 8 + 1), generator=g)
        out.append(motifs[picks].flatten(1)[:, :config.max_seq_len + 1])
    return out


def train_losses(config: ModelConfig, device: torch.device, dtype: torch.dtype, steps: int,
                 compiled: bool = False) -> tuple[list[float], float, int]:
    """(losses, seconds after the first step, graph breaks) of `steps` AdamW steps from seed 0."""
    torch.manual_seed(0)
    model = MusicTransformer(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=device.type == "cuda" or None)
    breaks = 0
    forward = model
    if compiled:
        torch._dynamo.reset()
        probe = _batches(config, 1)[0].to(device)
        breaks = torch._dynamo.explain(lambda a, b: model(a, b)[1])(probe[:, :-1], probe[:, 1:]).graph_break_count
        forward = torch.compile(model)
    losses, started = [], 0.0
    for step, batch in enumerate(_batches(config, steps)):
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            _, loss = forward(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        if step == 0:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
    values = [v.item() for v in losses]  # one read at the end: no host sync inside the loop
    return values, time.perf_counter() - started, breaks


def training(s: Smoke) -> None:
    steps = 8 if s.quick else 50
    reference, _, _ = train_losses(_tiny_lm(s, "blocked"), torch.device("cpu"), torch.float32, steps)
    rows = s.tables.setdefault("training", [])
    for backend in BACKENDS:
        if backend == "flex" and not s.cuda:
            continue  # FlexAttention has no backward on the CPU (train refuses it there)
        config = _tiny_lm(s, backend)
        for dtype, compiled in ((torch.float32, False), (torch.bfloat16, False), (torch.float32, True),
                                (torch.bfloat16, True)):
            if compiled and (s.skip_compile or s.quick and (backend != "blocked" or dtype != torch.float32)):
                continue  # inductor on a small CPU: one compiled run keeps the path working
            torch.backends.cuda.matmul.allow_tf32 = False
            losses, seconds, breaks = train_losses(config, s.device, dtype, steps, compiled)
            torch.backends.cuda.matmul.allow_tf32 = True
            diff = max(abs(a - b) for a, b in zip(losses, reference))
            tol = 0.05 if dtype == torch.float32 else 0.15  # trajectories drift apart over the steps
            name = f"train {backend} {str(dtype)[6:]}{' compiled' if compiled else ''}"
            s.check(f"{name}: {steps} steps track the CPU losses", diff < tol and losses[-1] < losses[0] - 0.5,
                    max_loss_difference=diff, first=losses[0], last=losses[-1], graph_breaks=breaks)
            tokens = (steps - 1) * 8 * config.max_seq_len
            rows.append({"backend": backend, "dtype": str(dtype)[6:], "compiled": compiled, "graph_breaks": breaks,
                         "tokens_per_s": round(tokens / max(seconds, 1e-9)),
                         "mfu_vs_bf16_peak": _mfu(s, config, tokens / max(seconds, 1e-9))})


def _mfu(s: Smoke, config: ModelConfig, tokens_per_s: float) -> float | None:
    """Model FLOPs utilization against the GPU's dense bf16 peak: 6 N per token plus attention's
    6 · layers · d_model · L (QKᵀ, the relative term and PV, causal half, forward and backward)."""
    if not s.cuda:
        return None
    name = torch.cuda.get_device_name(s.device)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    if peak is None:
        return None
    params = sum(p.numel() for p in MusicTransformer(config).parameters())
    flops = 6 * params + 6 * config.n_layers * config.d_model * config.max_seq_len
    return round(tokens_per_s * flops / peak, 4)


def generation(s: Smoke) -> None:
    for position in ("relative", "rope", "alibi", "none"):
        config = ModelConfig(vocab_size=96, d_model=64, n_layers=2, n_heads=4, max_seq_len=48, dropout=0.0,
                             position=position)
        torch.manual_seed(1)
        model = MusicTransformer(config).to(s.device).eval()
        prompt = torch.randint(3, 96, (2, 20), device=s.device)
        new = 60  # 20 + 60 > 48: the window slides
        cached = generate(model, prompt, GREEDY, new, use_cache=True)
        plain = generate(model, prompt, GREEDY, new, use_cache=False)
        s.check(f"generation {position}: cached = uncached past a window slide", torch.equal(cached, plain),
                first_difference=None if torch.equal(cached, plain) else int((cached != plain).nonzero()[0, 1]))


def _count_syncs(s: Smoke, fn) -> tuple[int | None, float]:
    """(host syncs, seconds) of fn(); syncs counted on CUDA only, by its sync debug mode's warnings."""
    if not s.cuda:
        started = time.perf_counter()
        fn()
        return None, time.perf_counter() - started
    s.sync()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        started = time.perf_counter()
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        s.sync()
    return sum("synchroniz" in str(w.message) for w in caught), time.perf_counter() - started


def shipped_model(s: Smoke, checkpoint: str | None) -> None:
    from musicmha.generation.music_generator import MusicGenerator

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 on both sides: a difference is a bug, not TF32
    cpu = MusicGenerator.from_pretrained(checkpoint, device="cpu", dtype=torch.float32)
    length = 128 if s.quick else min(1024, cpu.model.config.max_seq_len)
    tokens = torch.randint(3, cpu.model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = cpu.model(tokens)[0]
    for dtype, tol in ((torch.float32, 2e-3), (torch.bfloat16, 0.25)):
        on_device = MusicGenerator.from_pretrained(checkpoint, device=str(s.device), dtype=dtype)
        with torch.no_grad():
            logits = on_device.model(tokens.to(s.device))[0].float().cpu()
        err = (logits - reference).abs().max().item()
        s.check(f"shipped model {s.device} {str(dtype)[6:]} logits vs CPU fp32", err < tol, max_abs_difference=err)
        if cpu.copy_head is not None and dtype == torch.float32:  # the mixture eval scores, on either side
            with torch.no_grad():
                mixed = on_device.copy_head.mix_log_probs(logits.to(s.device), tokens.to(s.device)).cpu()
            err = (mixed - cpu.copy_head.mix_log_probs(logits, tokens)).abs().max().item()
            s.check(f"shipped copy head on {s.device} vs CPU (same logits)", err < 1e-4, max_abs_difference=err)
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = s.tables.setdefault("decode", [])
    generator = MusicGenerator.from_pretrained(checkpoint, device=str(s.device))  # bf16 on CUDA
    model = generator.model
    new, bars = (32, 1) if s.quick else (256, 4)
    for batch in (1, 4):
        prompt = tokens[:, :64].repeat(batch, 1).to(s.device)
        generate(model, prompt, GREEDY, 8)  # warm-up
        syncs, seconds = _count_syncs(s, lambda: generate(model, prompt, GREEDY, new))
        rows.append({"path": "generate, greedy", "batch": batch, "tokens_per_s": round(batch * new / seconds),
                     "syncs_per_token": None if syncs is None else round(syncs / new, 2)})
        _check_syncs(s, f"generate, greedy, batch {batch}", syncs, new)
        # The app's path: grammar mask, per-row seeded streams, a bar count (`stop`), EOS and a streaming
        # callback; its time includes turning the tokens into MIDI.
        steps: list[int] = []
        syncs, seconds = _count_syncs(s, lambda: generator.continue_midi(
            None, bars=bars, seed=0, num_samples=batch, callback=lambda step, new_tokens: steps.append(step)))
        rows.append({"path": f"continue_midi, {bars} bar(s)", "batch": batch,
                     "tokens_per_s": round(batch * len(steps) / seconds),
                     "syncs_per_token": None if syncs is None else round(syncs / max(len(steps), 1), 2)})
        head = " with the copy head" if generator.copy_head is not None else ""
        _check_syncs(s, f"continue_midi{head}, batch {batch}", syncs, len(steps))


def _check_syncs(s: Smoke, path: str, syncs: int | None, tokens: int) -> None:
    """The design: one sync per decoded token (the new tokens' copy to the host), plus a few per call (the
    prompt's copy, the end). A blocking upload in the loop (a mask, the copy head's q) would double it."""
    if syncs is not None:
        s.check(f"host syncs per decoded token, {path}", syncs <= tokens + 8, syncs=syncs, tokens=tokens)


def attention_times(s: Smoke) -> None:
    rows = s.tables.setdefault("attention", [])
    batch, heads, dim = (1, 2, 32) if s.quick else (4, 8, 64)
    dtype = torch.bfloat16 if s.cuda else torch.float32
    for length in ((128,) if s.quick else (1024, 2048)):
        for backend in BACKENDS:
            if backend == "flex" and not s.cuda:
                continue
            mha = MultiHeadAttention(heads * dim, heads, position="relative", max_relative_distance=length - 1,
                                     backend=backend, bias=False).to(s.device, dtype)
            x = torch.randn(batch, length, heads * dim, device=s.device, dtype=dtype, requires_grad=True)
            q, k, v = (p(x).unflatten(-1, (heads, dim)).transpose(1, 2).detach().requires_grad_()  # (B, H, L, D)
                       for p in (mha.q_proj, mha.k_proj, mha.v_proj))
            times = {}
            for mode in ("forward", "forward+backward"):
                def once():
                    out = mha.attend(q, k, v)
                    if mode != "forward":
                        out.sum().backward()
                for _ in range(2):
                    once()  # warm-up (and flex's compilation)
                s.sync()
                started, n = time.perf_counter(), 3 if s.quick else 10
                for _ in range(n):
                    once()
                s.sync()
                times[mode] = round(1e3 * (time.perf_counter() - started) / n, 2)
            rows.append({"backend": backend, "length": length, "dtype": str(dtype)[6:],
                         "forward_ms": times["forward"], "forward_backward_ms": times["forward+backward"]})


def markdown(report: dict) -> str:
    lines = ["# GPU smoke report", "", "| environment | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["environment"].items()]
    passed = sum(c["passed"] for c in report["checks"])
    lines += ["", f"## Checks: {passed} of {len(report['checks'])} passed", "", "| check | result | detail |",
              "|---|---|---|"]
    for c in report["checks"]:
        detail = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items()
                           if k not in ("name", "passed", "traceback"))
        lines.append(f"| {c['name']} | {'pass' if c['passed'] else '**FAIL**'} | {detail} |")
    for name, rows in report["tables"].items():
        if rows:
            lines += ["", f"## {name}", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for smoke.json and smoke.md")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (CI on a CPU: a few minutes)")
    parser.add_argument("--checkpoint", default=None, help="the shipped model (default: checkpoints/...)")
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile training runs (faster)")
    args = parser.parse_args(argv)
    s = Smoke(torch.device(args.device), args.quick, args.skip_compile)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = ((kernel_parity, ()), (training, ()), (generation, ()), (shipped_model, (args.checkpoint,)),
                (attention_times, ()))
    machine = environment(s.device) | {"quick": args.quick}
    for done, (section, extra) in enumerate(sections, 1):
        s.run(section, *extra)
        # written after every section: a run stopped at a time limit still leaves what it measured
        report = {"environment": machine | {"section_seconds": s.seconds,
                                            "seconds": round(time.perf_counter() - started, 1),
                                            "sections_done": f"{done} of {len(sections)}"},
                  "checks": s.checks, "tables": s.tables}
        (out / "smoke.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "smoke.md").write_text(markdown(report))
    failed = [c["name"] for c in s.checks if not c["passed"]]
    print(f"{len(s.checks) - len(failed)} of {len(s.checks)} checks passed; report in {out}/smoke.md")
    for name in failed:
        print(f"FAILED: {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
