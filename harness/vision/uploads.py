"""Batch uploads on their own CUDA stream, overlapped with the compute of the batch before.

The end-to-end window (runner._pipelined_window) double-buffers by slot. On a GPU:
- `issue(slot, upload)`: the copy stream waits until the compute stream has released the slot's
  device buffer (`release`, recorded after the step that consumed it), runs the upload (copies from
  pinned memory, non-blocking: the copy engine), and records `up[slot]`;
- `wait(slot)`: the compute stream waits for `up[slot]` before the batch's first device step;
- `host_wait(slot)`: the host waits for `up[slot]` before overwriting the slot's pinned buffer.
So batch i+1's upload runs on the copy engine while batch i is pre-processed, inferred and
post-processed, and nothing is read before it is written or overwritten before it is read.
On the CPU the upload runs inline and the waits are no-ops. `stream`, `event` and `on_stream` are
injectable so a test can check the ordering without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch


class Uploads:
    def __init__(
        self,
        device: torch.device,
        slots: int = 2,
        stream=None,
        event: Callable | None = None,
        on_stream: Callable | None = None,
        compute=None,
    ):
        self.overlapped = device.type == "cuda" or stream is not None
        if not self.overlapped:
            return
        self.copy = stream if stream is not None else torch.cuda.Stream(device)
        self.compute = compute if compute is not None else torch.cuda.current_stream(device)
        event = event or torch.cuda.Event
        self.up = [event() for _ in range(slots)]
        self.free = [event() for _ in range(slots)]
        self.on_stream = on_stream or torch.cuda.stream

    def issue(self, slot: int, upload: Callable[[], torch.Tensor | None]) -> None:
        """Run `upload` (it returns the device tensor it filled, or None) on the copy stream."""
        if not self.overlapped:
            upload()
            return
        self.copy.wait_event(self.free[slot])
        with self.on_stream(self.copy) if self.on_stream else nullcontext():
            x = upload()
        if isinstance(x, torch.Tensor) and x.is_cuda:
            x.record_stream(self.compute)  # allocated on the copy stream, used on the compute stream
        self.up[slot].record(self.copy)

    def wait(self, slot: int) -> None:
        if self.overlapped:
            self.compute.wait_event(self.up[slot])

    def release(self, slot: int) -> None:
        if self.overlapped:
            self.free[slot].record(self.compute)

    def host_wait(self, slot: int) -> None:
        if self.overlapped:
            self.up[slot].synchronize()


__all__ = ["Uploads"]
