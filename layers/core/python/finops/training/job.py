"""The hook a real training job plugs into: a builder that returns a :class:`TrainingJob`.

``FINOPS_TRAINING_JOB=package.module:build`` names the builder (default: the tiny reference job in
:mod:`finops.training.tiny`). The builder is called as ``build(seed=..., total_steps=...)`` after every RNG is
seeded, so weight initialisation is reproducible; the loop owns the data order, checkpoints and stopping.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class TrainingJob:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    dataset_size: int
    batch_size: int
    # indices (a 1-D LongTensor from the seeded permutation) -> whatever ``loss`` takes
    get_batch: Callable[[torch.Tensor], Any]
    # (model, batch) -> scalar loss tensor; the loop does zero_grad, backward, optimizer and scheduler steps
    loss: Callable[[torch.nn.Module, Any], torch.Tensor]
    scheduler: Any | None = None
    max_grad_norm: float | None = None


class JobBuilder(Protocol):
    def __call__(self, *, seed: int, total_steps: int) -> TrainingJob: ...


def load_builder(spec: str) -> JobBuilder:
    """``"package.module:attribute"`` -> the builder it names."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"training job must look like 'package.module:build', not {spec!r}")
    builder = getattr(importlib.import_module(module_name), attribute)
    if not callable(builder):
        raise TypeError(f"{spec} is not callable")
    return builder
