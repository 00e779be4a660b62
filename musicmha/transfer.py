"""Host -> device copies that do not make the host wait: the one place that knows how.

On CUDA a blocking copy from pageable host memory synchronizes the stream: the host waits for every queued
kernel before the copy starts. Generation sends a grammar mask and the copy head's distribution every
token, and training sends a batch every micro-step, so each of those would cost a sync. Copied instead
from a fresh pinned buffer with non_blocking=True, the copy is queued behind the kernels and the host goes
on at once; the buffer is fresh, so the host may change the source tensor straight away.
"""

from __future__ import annotations

import torch


def send(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`tensor` on `device`; from the host to CUDA without waiting. Already there: the tensor itself."""
    device = torch.device(device)
    if tensor.device == device:
        return tensor
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
