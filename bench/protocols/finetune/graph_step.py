"""A fine-tuning step captured once as a CUDA graph and replayed for every batch.

At the paper's batch size of 5 a training step on a large GPU is bound by
kernel launches, not arithmetic: forward, loss, backward and the (fused) SGD
update are a few hundred small kernels. Capturing them in one
``torch.cuda.CUDAGraph`` turns a step into one launch. The captured step
is numerically the eager one: the warm-up iterations that capture needs are
undone (weights, BatchNorm statistics and momentum restored) before the first
real batch. Supported: SGD / SGD with momentum, a constant learning rate,
no fp16 loss scaling (bf16 autocast is fine); :func:`bench.protocols.finetune.settings.graph_unsupported`
says why otherwise.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

import torch
from torch import nn

WARMUP_STEPS = 3


class GraphedStep:
    """``step(x, y) -> (logits, loss)``: one replay of the captured training step.

    ``x`` and ``y`` must have the batch shape the step was built with; the
    returned tensors are the graph's static outputs (read or clone them before
    the next call).
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        example_x: torch.Tensor,
        example_y: torch.Tensor,
        autocast: Callable[[], contextlib.AbstractContextManager],
    ) -> None:
        self.static_x = example_x.detach().clone()
        self.static_y = example_y.detach().clone()
        model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        optimizer_state = copy.deepcopy(optimizer.state_dict()) if optimizer.state else None
        rng = torch.cuda.get_rng_state(self.static_x.device)

        side = torch.cuda.Stream(self.static_x.device)
        side.wait_stream(torch.cuda.current_stream(self.static_x.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = criterion(model(self.static_x).float(), self.static_y)
                loss.backward()
                optimizer.step()
        del loss  # drop the warm-up's autograd graph before capturing
        torch.cuda.current_stream(self.static_x.device).wait_stream(side)

        # Undo the warm-up: same weights, statistics, momentum and RNG as before it.
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(model_state[k])
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        else:
            for state in optimizer.state.values():  # zero momentum == SGD's first step
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        torch.cuda.set_rng_state(rng, self.static_x.device)

        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            with autocast():
                self.logits = model(self.static_x)
                self.loss = criterion(self.logits.float(), self.static_y)
            self.loss.backward()
            optimizer.step()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.static_x.copy_(x, non_blocking=True)
        self.static_y.copy_(y, non_blocking=True)
        self.graph.replay()
        return self.logits, self.loss
