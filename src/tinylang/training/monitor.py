"""Watching a run for numerical faults without a host sync per step: each step's loss goes into
a small device buffer, checked whenever a log row, checkpoint or state is written."""

from __future__ import annotations

import torch


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN or infinite: the run stopped at ``step``.

    ``lr`` is the learning rate of that step's update, ``reason`` says what was non-finite and
    ``checkpoints`` lists the steps of the checkpoints kept (all written before ``step``)."""

    def __init__(self, run: str, step: int, lr: float, reason: str, checkpoints: list[int]):
        self.run, self.step, self.lr, self.reason, self.checkpoints = run, step, lr, reason, checkpoints
        super().__init__(f"run {run or '(unnamed run)'}: {reason} at step {step} (learning rate {lr:g})")


class DivergenceMonitor:
    """The losses of the steps since the last check (at most ``capacity``), and the check."""

    def __init__(self, capacity: int, params: list[torch.Tensor], device: torch.device):
        self.recent = torch.empty(capacity, device=device)
        self.count = 0
        self.params = params

    def record(self, loss: torch.Tensor) -> None:
        self.recent[self.count] = loss
        self.count += 1

    def fault(self, step: int, weights: bool) -> tuple[int, str] | None:
        """The first non-finite step since the last check and why (``step`` is the step just
        done), or with ``weights`` a non-finite weight after it; None when all is finite."""
        losses, self.count = self.recent[: self.count], 0
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            first = int(bad[0])
            return step - len(losses) + 1 + first, f"loss is {float(losses[first])}"
        if weights and not bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all()):
            return step, "weights are not finite after the update"
        return None


__all__ = ["DivergenceMonitor", "TrainingDiverged"]
