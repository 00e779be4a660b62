"""Host syncs of `generate`, counted on the CPU: at most one device -> host read per decoded token.

On a GPU, every read of a device tensor by the host (`bool()`, `.item()`, `.tolist()`, `.cpu()`, ...) waits for
the GPU to finish; benchmarks/gpu_smoke.py counts them there with CUDA's sync debug mode. On the CPU nothing
waits, so `DeviceReads` tells device tensors from host ones itself: what the model returns, what is made with
`device=`, what `.to(device)` makes of a host tensor, and everything computed from any of those lives on the
"device"; `.cpu()` / `.to("cpu")` of one is a copy to the host (counted, as the sync it would be), and so is
every read of its values. Copies behave as on a GPU (a new tensor each way), so the host and device copies of
the sequence stay apart even though both live in the CPU's memory.

Host -> device copies: on CUDA a blocking one from pageable memory waits for the GPU too (its sync debug mode
reports it). `DeviceReads.uploads` counts every `.to(device)` of a host tensor without non_blocking=True;
the library sends through `musicmha.transfer.send`, which on the CPU hands the tensor back without a copy and
on CUDA copies from pinned memory without waiting.

What the CPU cannot show: the model's device and the host have one name here, so `.to(device)` of a device
tensor counts as a copy to the host (a count too high, never too low), and `send`'s CUDA branch does not run
(gpu_smoke counts every sync on a GPU).
"""

from __future__ import annotations

import weakref
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from musicmha import ModelConfig, MusicTransformer
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.generation.controls import LengthRule
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.music_generator import MusicGenerator
from musicmha.generation.options import SamplingOptions
from musicmha.generation.sampling import generate
from musicmha.generation.copy_head import CopyHead

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "musicmha-small"

T = torch.Tensor
# Functions that hand a tensor's values to Python: each one, on a device tensor, waits for the device.
READS = {T.__bool__, T.item, T.tolist, T.numpy, T.__int__, T.__float__, T.__index__, T.__complex__, T.__array__,
         T.__repr__, T.__format__, T.__contains__, T.equal, T.allclose, torch.equal, torch.allclose,
         torch.is_nonzero, T.is_nonzero}
# Results whose size depends on the values: the host must read them to allocate.
DATA_DEPENDENT = {T.nonzero, torch.nonzero, T.masked_select, torch.masked_select, T.unique, torch.unique,
                  torch.unique_consecutive, T.bincount, torch.bincount}


def _is_cpu(device) -> bool:
    return device is not None and torch.device(device).type == "cpu"


def _target_device(func, args, kwargs):
    """The device a `.to(...)` call names, or None when it names none (a dtype change)."""
    if func is T.cpu:
        return "cpu"
    if kwargs.get("device") is not None:
        return kwargs["device"]
    for arg in args[1:]:
        if isinstance(arg, (str, torch.device)):
            return arg
        if isinstance(arg, torch.Tensor):
            return arg.device
    return None


IN_PLACE = {"__setitem__", "__ior__", "__iand__", "__ixor__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
            "__ifloordiv__", "__imod__", "__ipow__", "__ilshift__", "__irshift__"}


class DeviceReads(TorchFunctionMode):
    """Counts host reads of device tensors (see the module docstring); `where` names the function of each."""

    def __init__(self) -> None:
        super().__init__()
        self._device: dict[int, weakref.ref] = {}  # id -> the tensor; ids, since tensors compare by value
        self.count = 0
        self.where: list[str] = []
        self.uploads = 0  # blocking host -> device copies

    def mark(self, tensor: torch.Tensor) -> torch.Tensor:
        self._device[id(tensor)] = weakref.ref(tensor)
        return tensor

    def on_device(self, tensor: torch.Tensor) -> bool:
        ref = self._device.get(id(tensor))
        return ref is not None and ref() is tensor

    def _read(self, func) -> None:
        self.count += 1
        self.where.append(getattr(func, "__name__", str(func)))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        from_device = any(self.on_device(t) for t in inputs)
        if func in (T.to, T.cpu):
            return self._copy(func, args, kwargs, from_device)
        if from_device and (func in READS or func in DATA_DEPENDENT):
            self._read(func)
        if from_device and func in (T.__getitem__, T.__setitem__):
            index = [t for t in tree_flatten(args[1])[0] if isinstance(t, torch.Tensor)]
            if any(t.dtype == torch.bool for t in index):
                self._read(func)  # a boolean index selects a data-dependent number of elements
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        in_place = name in IN_PLACE or name.endswith("_") and not name.startswith("_") or "out" in kwargs
        if in_place and from_device:
            self.mark(args[0])
        if from_device or not inputs and kwargs.get("device") is not None:  # computed there, or made there
            for t in tree_flatten(result)[0]:
                if isinstance(t, torch.Tensor):
                    self.mark(t)
        return result

    def _copy(self, func, args, kwargs, from_device: bool):
        """`.to(...)` and `.cpu()`: a copy between host and device is a new tensor, as on a GPU."""
        target = _target_device(func, args, kwargs)
        result = func(*args, **kwargs)
        if target is None:  # a dtype change stays where it is
            return self.mark(result) if from_device else result
        if result is args[0]:
            result = result.clone()
        if from_device and _is_cpu(target):
            self._read(func)  # device -> host: the sync
            return result
        if from_device or func is not T.cpu:  # stays on the device, or host -> device
            if not from_device and not kwargs.get("non_blocking", False):
                self.uploads += 1
                self.where.append("upload")
            return self.mark(result)
        return result


def _on_device(model: MusicTransformer, counter: DeviceReads) -> MusicTransformer:
    """The model's weights and outputs are device tensors (its inputs are sent there with `.to(device)`)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        counter.mark(tensor)
    forward = model.forward

    def marked(*args, **kwargs):
        logits, loss = forward(*args, **kwargs)
        return counter.mark(logits), loss

    model.forward = marked
    return model


def test_the_counter_sees_device_reads_and_not_host_ones():
    """The counter can fail: each kind of read of a device tensor counts, host work and copies to the device do not."""
    model = MusicTransformer(ModelConfig(vocab_size=61, d_model=32, n_layers=1, n_heads=4, max_seq_len=32))
    with DeviceReads() as counter:
        model = _on_device(model, counter)
        host = torch.tensor([[1, 2, 3]])
        tokens = host.to("cpu")  # host -> device: not a read, but a blocking upload
        assert (counter.count, counter.uploads) == (0, 1)
        tokens = host.to("cpu", non_blocking=True)  # what `send` does on CUDA (from pinned memory)
        logits = model(tokens)[0]
        assert (counter.count, counter.uploads) == (0, 1)
        best = logits[:, -1].argmax(-1)
        bool(best.sum() > 0), best.tolist(), best.cpu(), int(best[0]), logits[logits > 0]
        assert counter.count == 5, counter.where
        host.tolist(), bool(host.sum() > 0), best.cpu().tolist(), torch.zeros(3, device="cpu").to(torch.bool)
        assert counter.count == 6, counter.where  # only the `.cpu()` copy of `best`


@pytest.fixture(scope="module")
def tokenizer():
    return MusicTokenizer.load(CHECKPOINT)


def _model(vocab: int, context: int = 32) -> MusicTransformer:
    torch.manual_seed(0)
    return MusicTransformer(ModelConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, max_seq_len=context,
                                        dropout=0.0)).eval()


HEAD = CopyHead(weights=(0.3, 0.5, 0.7, 0.9, 0.95), sampling_boost=3.0)


@pytest.mark.parametrize(("options", "use_cache", "head"),
                         [(SamplingOptions(seed=3, top_k=20, top_p=0.9), True, None),
                          (SamplingOptions(top_k=1), False, None),
                          (SamplingOptions(seed=3, top_k=20, top_p=0.9), True, HEAD)],
                         ids=["seeded-cached", "greedy-uncached", "seeded-cached-copy-head"])
def test_one_host_read_per_token_with_grammar_stop_callback_and_eos(tokenizer, options, use_cache, head):
    """The app's path: grammar mask, `stop` at a bar count, end-of-piece and a callback reading the tokens (as
    the app's job does), past two window slides, with and without the copy head (its history and distribution
    live on the host). One read per step, the copy of the new tokens, and no blocking upload."""
    spec = tokenizer.grammar_spec()
    model = _model(tokenizer.vocab_size)
    batch, steps = 3, 70  # 1 + 70 tokens through a 32-token context: the window slides three times
    grammar = TokenGrammar(spec, length=LengthRule(bars=6))
    prompt = torch.tensor([[spec.bos_id]] * batch)
    grammar.follow(prompt)

    def stop(sequences):  # a row ends when its bars are reached, or row 0 early, so EOS pads a finished row
        grammar.follow(sequences)
        return grammar.reached() | (torch.arange(batch) == 0) & (sequences.shape[1] > 30)

    reads_at_step, streamed = [], []

    def callback(step, tokens):
        streamed.append(tokens.tolist())  # what the app does: free when the tokens are the host's
        reads_at_step.append(counter.count)

    reference = generate(model, prompt, options, steps, allowed=grammar, stop=stop, callback=lambda s, t: None,
                         eos_token_id=spec.eos_id, use_cache=use_cache, copy_head=head)
    grammar.reset(batch)
    grammar.follow(prompt)
    with DeviceReads() as counter:
        out = generate(_on_device(model, counter), prompt, options, steps, allowed=grammar, stop=stop,
                       callback=callback, eos_token_id=spec.eos_id, use_cache=use_cache, copy_head=head)
    assert torch.equal(out, reference)  # the counter changes nothing
    n = len(reads_at_step)
    assert n > 50 and out.shape[1] == 1 + n and (out[0, 1 + 30:] == spec.eos_id).all()  # it ran, with EOS padding
    assert torch.equal(torch.tensor(streamed).T, out[:, 1:])
    per_step = [b - a for a, b in zip([0, *reads_at_step], reads_at_step)]
    assert max(per_step) == 1, (per_step, counter.where[:12])
    assert counter.count == n, counter.where  # after the last callback, `stop` reads the host's copy only
    assert counter.uploads == 0, counter.where


def test_one_host_read_per_token_through_music_generator(tokenizer):
    """continue_midi end to end (grammar, seeds, EOS, callback; `stop` is the test above's): one read per token,
    and one more for all the rows at the end, not one per row. (A bar takes a random model ~1,000 tokens.)"""
    generator = MusicGenerator(_model(tokenizer.vocab_size), tokenizer, copy_head=HEAD)
    steps = []
    with DeviceReads() as counter:
        _on_device(generator.model, counter)
        generator.continue_midi(None, max_new_tokens=60, seed=5, num_samples=3,
                                callback=lambda s, t: steps.append(t.tolist()))
    assert len(steps) == 60
    assert counter.count == len(steps) + 1, counter.where
    assert counter.uploads == 0, counter.where


def test_a_mask_leaving_no_token_is_refused_on_the_host_before_it_is_sent():
    model = _model(61)
    with DeviceReads() as counter:
        _on_device(model, counter)
        with pytest.raises(ValueError, match="leaves no token"):
            generate(model, torch.tensor([[1, 2]]), SamplingOptions(seed=0), 5,
                     allowed=lambda seq: torch.arange(61) > 60)  # host-built, like the grammar's
    assert counter.count == 0, counter.where
