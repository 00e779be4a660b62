"""FSDP2 for real, on the CPU: two gloo processes shard, train and export a MusicTransformer.

accelerate 1.15 runs no FSDP on the CPU (test_train_setup.py), and FSDP1 refuses it ("FSDP needs a non-CPU
accelerator device"), but torch's FSDP2 (`fully_shard`) runs here. So each process shards the model with accelerate's own FSDP2
function and the wrap policy `keep_tied_weights_together` sets (each Block its own unit, the root, with the
tied embedding/output matrix, last), builds the optimizer with training's `_optimizer` on the
sharded parameters (what FSDP2's one `prepare` of model and optimizer leads to), trains on its half of the
batch, and exports through `export_on_every_rank` with the state-dict call accelerate's `get_state_dict` makes
under FSDP2; then it saves and restores its shards as accelerate's save_state/load_state do under FSDP2 (the
next step matches). The reference is one plain process: the same model and optimizer on the whole batch (FSDP averages
the halves' gradients, which is the whole batch's mean loss gradient for equal halves).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from accelerate.utils import DistributedType
from conftest import tiny_config

from musicmha import MusicTransformer
from musicmha.training.config import TrainConfig
from musicmha.training.devices import export_on_every_rank, keep_tied_weights_together
from musicmha.training.train import _optimizer

WORLD, STEPS = 2, 3

FSDPModule = pytest.importorskip("torch.distributed.fsdp").__dict__.get("FSDPModule")


class Fsdp2Accelerator:
    """The calls `export_on_every_rank` makes, answered as accelerate 1.15's Accelerator answers them under
    FSDP2 (its get_state_dict: get_model_state_dict with these options, an all-gather on every rank)."""

    distributed_type = DistributedType.FSDP
    is_fsdp2 = True

    def __init__(self, rank: int) -> None:
        self.is_main_process = rank == 0

    def get_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
        return get_model_state_dict(model, options=options)

    def wait_for_everyone(self) -> None:
        dist.barrier()


def _batch() -> torch.Tensor:
    return torch.randint(0, 61, (4, 33), generator=torch.Generator().manual_seed(1))


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, steps: int = STEPS) -> None:
    for _ in range(steps):
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _sharded(seed: int, cfg: TrainConfig, rank: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """accelerate's own FSDP2 sharding (fsdp2_prepare_model, with cpu_ram_efficient_loading: the model goes to
    the meta device and rank 0's weights are broadcast), under the wrap policy training sets."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, cpu_ram_efficient_loading=True)
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), mixed_precision="no",
                                  is_main_process=rank == 0, device=torch.device("cpu"))
    keep_tied_weights_together(accelerator)  # each Block a unit; the root keeps the tied embedding and head
    torch.manual_seed(seed)
    model = fsdp2_prepare_model(accelerator, MusicTransformer(tiny_config()))
    assert sum(isinstance(m, FSDPModule) for m in model.modules()) > len(model.blocks)  # it did shard
    return model, _optimizer(model, cfg)


def _resumes_exactly(model, optimizer, cfg: TrainConfig, half: torch.Tensor, folder: str) -> None:
    """What accelerate's save_state / load_state do under FSDP2: each rank's shards of the model and the
    optimizer through torch.distributed.checkpoint, loaded into a differently initialized copy; the next
    step's loss is then the same."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    saved = dict(zip(("model", "optimizer"), get_state_dict(model, optimizer)))
    dcp.save(saved, checkpoint_id=folder)
    fresh, fresh_optimizer = _sharded(1, cfg, dist.get_rank())
    state = dict(zip(("model", "optimizer"), get_state_dict(fresh, fresh_optimizer)))
    dcp.load(state, checkpoint_id=folder)
    set_state_dict(fresh, fresh_optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    losses = []
    for net, opt in ((model, optimizer), (fresh, fresh_optimizer)):
        _train(net, opt, half, steps=1)
        losses.append(net(half[:, :-1], half[:, 1:])[1].item())
    assert losses[0] == losses[1], losses


def _rank(rank: int, port: int, cfg: TrainConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model, optimizer = _sharded(0, cfg, rank)
        half = _batch().chunk(WORLD)[rank]
        _train(model, optimizer, half)
        export_on_every_rank(Fsdp2Accelerator(rank), model, lambda: MusicTransformer(tiny_config()),
                             lambda plain: plain.save_pretrained(out))
        _resumes_exactly(model, optimizer, cfg, half, str(Path(out).parent / "state"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(FSDPModule is None or not dist.is_gloo_available(), reason="needs FSDP2 and gloo")
def test_two_process_fsdp2_trains_like_one_process_exports_the_full_model_and_resumes(tmp_path):
    cfg = TrainConfig.from_sources(data=str(tmp_path), out=str(tmp_path / "run"), preset="tiny")
    out = tmp_path / "export"
    context = mp.start_processes(_rank, args=(_free_port(), cfg, str(out)), nprocs=WORLD, start_method="spawn",
                                 join=False)
    deadline = time.monotonic() + 180  # a collective that hangs must fail the test, not stall the suite
    while not context.join(timeout=5):  # re-raises a rank's exception
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the FSDP2 processes did not finish in 180 s")

    torch.manual_seed(0)
    reference = MusicTransformer(tiny_config())
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    _train(reference, _optimizer(reference, cfg), _batch())
    exported = MusicTransformer.from_pretrained(Path(out))
    assert exported.lm_head.weight is exported.token_embedding.weight  # still one matrix
    expected = reference.state_dict()
    assert set(exported.state_dict()) == set(expected)
    for key, value in exported.state_dict().items():
        assert torch.allclose(value, expected[key], atol=2e-5), key  # every shard trained, and gathered
    moved = [key for key in expected if not torch.equal(expected[key], initial[key])]
    assert len(moved) == len(expected)  # every tensor trained (the test would see an orphaned optimizer)
