"""musicmha.transfer.send: host -> CUDA copies from pinned memory without waiting; no copy when already there."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from musicmha.transfer import send


class RecordCopies(TorchFunctionMode):
    """Records `pin_memory` and `.to` calls and answers them with the tensor itself (this machine has no CUDA)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.pin_memory, torch.Tensor.to):
            self.calls.append((func.__name__, {k: v for k, v in kwargs.items()}))
            return args[0]
        return func(*args, **kwargs)


def test_a_tensor_already_there_is_handed_back_without_a_copy():
    tensor = torch.arange(4)
    assert send(tensor, "cpu") is tensor
    assert send(tensor, torch.device("cpu")) is tensor


def test_host_to_cuda_goes_through_pinned_memory_without_blocking():
    with RecordCopies() as recorder:
        send(torch.arange(4), torch.device("cuda"))
    assert recorder.calls == [("pin_memory", {}), ("to", {"non_blocking": True})]


def test_other_moves_are_plain_copies():
    moved = send(torch.arange(4.0), "meta")
    assert moved.device.type == "meta" and moved.shape == (4,)
