"""The distribution- and device-dependent parts of training (musicmha/training/devices.py), on the CPU.

FSDP does not run on the CPU here: accelerate 1.15 turns `ACCELERATE_USE_CPU=true` into MULTI_CPU and
ignores ACCELERATE_USE_FSDP (checked with torchrun, FSDP_VERSION 1 and 2: both ran plain DDP). So the
FSDP order and the collective export are tested against a fake accelerator that wraps the way FSDP1 does
(new, flattened parameters under wrapped names) and records every call. FSDP2 itself runs on the CPU:
test_fsdp2_cpu.py trains, exports and resumes with two real processes.
"""

import copy
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from conftest import tiny_config
from torch import nn

from musicmha import MusicTransformer
from musicmha.errors import TrainingError
from musicmha.training.train import _optimizer
from musicmha.training.config import TrainConfig
from musicmha.training.devices import (
    checked_step_loss,
    export_on_every_rank,
    prepare_model_and_optimizer,
    to_device,
)


class _FSDPWrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._fsdp_wrapped_module = inner


def _fsdp1_wrap(model: nn.Module) -> nn.Module:
    """What FSDP1 (use_orig_params=True) does to the parameters: new tensors, flattened, under a wrapped
    name; tied parameters stay one parameter."""
    inner = copy.deepcopy(model)
    replaced: dict[int, nn.Parameter] = {}
    for name, param in list(inner.named_parameters(remove_duplicate=False)):
        owner_name, _, attr = name.rpartition(".")
        owner = inner.get_submodule(owner_name) if owner_name else inner
        if id(param) not in replaced:
            replaced[id(param)] = nn.Parameter(param.detach().clone().flatten(), requires_grad=param.requires_grad)
        setattr(owner, attr, replaced[id(param)])
    return _FSDPWrapper(inner)


class FakeFSDPAccelerator:
    distributed_type = DistributedType.FSDP

    def __init__(self, *, fsdp2: bool = False, rank: int = 0) -> None:
        self.is_fsdp2, self.process_index, self.is_main_process = fsdp2, rank, rank == 0
        self.state = SimpleNamespace(fsdp_plugin=SimpleNamespace(auto_wrap_policy=None,
                                                                 transformer_cls_names_to_wrap=None))
        self.calls: list[str] = []

    def prepare(self, *objects):
        self.calls.append("prepare(" + ", ".join(type(o).__name__ for o in objects) + ")")
        out = [_fsdp1_wrap(o) if isinstance(o, nn.Module) and not self.is_fsdp2 else o for o in objects]
        return out[0] if len(out) == 1 else tuple(out)

    def get_state_dict(self, model):
        self.calls.append("get_state_dict")
        return {k: v.clone() for k, v in self.full.items()} if self.is_main_process else {}

    def wait_for_everyone(self):
        self.calls.append("wait_for_everyone")


def _cfg(tmp_path) -> TrainConfig:
    return TrainConfig.from_sources(data=str(tmp_path), out=str(tmp_path / "run"), preset="tiny")


def test_fsdp1_optimizer_is_built_on_the_wrapped_parameters(tmp_path):
    model = MusicTransformer(tiny_config())
    accelerator = FakeFSDPAccelerator()
    wrapped, optimizer = prepare_model_and_optimizer(accelerator, model,
                                                     lambda m: _optimizer(m, _cfg(tmp_path), reference=model))
    assert accelerator.calls == ["prepare(MusicTransformer)", "prepare(AdamW)"]  # model first
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in wrapped.parameters()}  # every one, and only the wrapped ones
    assert not in_optimizer & {id(p) for p in model.parameters()}  # no orphans
    # weight decay decided on the original shapes: the flattened matrices still decay
    decay, no_decay = (len(group["params"]) for group in optimizer.param_groups)
    plain = _optimizer(model, _cfg(tmp_path))
    assert (decay, no_decay) == tuple(len(group["params"]) for group in plain.param_groups)
    plugin = accelerator.state.fsdp_plugin  # tied embedding and output weights in one (the root) unit
    assert plugin.transformer_cls_names_to_wrap == ["Block"]
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy


def test_fsdp2_gets_model_and_optimizer_in_one_prepare(tmp_path):
    model = MusicTransformer(tiny_config())
    accelerator = FakeFSDPAccelerator(fsdp2=True)
    prepare_model_and_optimizer(accelerator, model, lambda m: _optimizer(m, _cfg(tmp_path), reference=model))
    assert accelerator.calls == ["prepare(MusicTransformer, AdamW)"]  # accelerate swaps the parameters itself


def test_without_fsdp_the_optimizer_and_its_groups_are_unchanged(tmp_path):
    from accelerate import Accelerator

    model = MusicTransformer(tiny_config())
    before = [[tuple(p.shape) for p in g["params"]] for g in _optimizer(model, _cfg(tmp_path)).param_groups]
    prepared, optimizer = prepare_model_and_optimizer(Accelerator(cpu=True), model,
                                                      lambda m: _optimizer(m, _cfg(tmp_path)))
    assert [[tuple(p.shape) for p in g["params"]] for g in optimizer.param_groups] == before
    assert "fused" not in optimizer.state_dict()["param_groups"][0] or \
        not optimizer.state_dict()["param_groups"][0]["fused"]  # CPU states stay what they were


@pytest.mark.parametrize("rank", [0, 1])
def test_export_gathers_on_every_rank_and_only_the_main_one_writes(rank):
    model = MusicTransformer(tiny_config())
    full = {k: v + 1.0 for k, v in model.state_dict().items()}  # "gathered" weights, not the local ones
    accelerator = FakeFSDPAccelerator(rank=rank)
    accelerator.full = full
    written: list[nn.Module] = []
    rng = torch.get_rng_state()
    export_on_every_rank(accelerator, _fsdp1_wrap(model), lambda: MusicTransformer(tiny_config()), written.append)
    assert accelerator.calls == ["get_state_dict", "wait_for_everyone"]  # the collective on both ranks
    assert torch.equal(torch.get_rng_state(), rng)  # building the copy leaves the run's random stream alone
    if rank == 1:
        assert written == []
        return
    (plain,) = written
    assert all(torch.equal(plain.state_dict()[k], full[k]) for k in full)
    assert plain.lm_head.weight is plain.token_embedding.weight  # still tied


def test_one_host_read_per_optimizer_step_and_the_same_loss_value():
    accelerator = SimpleNamespace(num_processes=1)
    losses = [torch.tensor(2.345678, dtype=torch.float32), torch.tensor(1.2345, dtype=torch.float32)]
    expected = 0.0
    for loss in losses:  # what the loop computed before: one .item() per micro-step
        expected += loss.item() / 2
    assert checked_step_loss(accelerator, losses, torch.tensor(3.0), 0, 2) == expected
    with pytest.raises(TrainingError, match="non-finite loss at step 5"):
        checked_step_loss(accelerator, [losses[0], torch.tensor(float("nan"))], torch.tensor(float("nan")),
                          4, 2)
    with pytest.raises(TrainingError, match="non-finite gradient at step 5"):
        checked_step_loss(accelerator, losses, torch.tensor(float("inf")), 4, 2)
    checked_step_loss(accelerator, losses, None, 4, 2)  # fp16's scaler checks gradients itself


def test_cpu_batches_are_not_copied_or_pinned():
    import numpy as np

    batch = np.arange(12, dtype=np.int64).reshape(3, 4)
    tensor = to_device(batch, torch.device("cpu"))
    assert tensor.data_ptr() == batch.ctypes.data and not tensor.is_pinned()
