"""The floor a training step is measured against: the device's own time for one step, with no framework around it.

On a GPU the whole step (forward, loss, backward, Adam) is captured once as a CUDA graph and replayed; CUDA events
around the replays give the GPU's time per step with no Python, no launches and no data loading, so a side's step
time minus the floor is host overhead. On the CPU there is no such replay: the floor is an eager loop on one fixed
batch in this process's CPU time (the model's arithmetic plus eager PyTorch's own dispatch, nothing else).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from shared.config import TrainConfig
from shared.model import build_model


def _step_function(cfg: TrainConfig, device: torch.device):
    """A closure running one training step of WaferCNN on a fixed batch, as both sides' steps do it."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, capturable=device.type == "cuda")
    x = torch.rand(cfg.batch_size, 1, cfg.image_size, cfg.image_size, device=device).contiguous(memory_format=memory)
    y = torch.randint(0, 9, (cfg.batch_size,), device=device)
    bf16 = cfg.precision == "bf16-mixed"

    def step() -> None:
        # cache_enabled=False: autocast's weight cache may not outlive a graph capture
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return step, optimizer


def gpu_floor(cfg: TrainConfig, steps: int = 200) -> dict:
    """µs per step of a CUDA-graph replay of the whole training step, timed by CUDA events."""
    device = torch.device("cuda")
    step, optimizer = _step_function(cfg, device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture (cuDNN picks its algorithms here)
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    for _ in range(steps):
        graph.replay()
    end.record()
    end.synchronize()
    return {"us_per_step": 1e3 * start.elapsed_time(end) / steps, "steps": steps,
            "method": "CUDA-graph replay of the whole step, CUDA events"}


def cpu_floor(cfg: TrainConfig, steps: int = 50, threads: int = 1) -> dict:
    """µs of process CPU time per step of an eager loop on one fixed batch, with `threads` intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        step, optimizer = _step_function(cfg, torch.device("cpu"))
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            step()
        cpu = time.process_time()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            step()
        used = time.process_time() - cpu
    finally:
        torch.set_num_threads(before)
    return {"us_per_step": 1e6 * used / steps, "steps": steps,
            "method": f"eager loop on one fixed batch, process CPU time, {threads} thread(s)"}
