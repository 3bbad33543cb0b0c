"""A tiny reference job: an MLP with dropout learning a noisy linear map from a seeded synthetic dataset.

Small enough for tests (hundreds of steps in well under a second) yet it exercises everything a checkpoint
must restore: AdamW moments, a cosine LR schedule, dropout (torch RNG), input jitter drawn from numpy's
global RNG and a shuffled data order. ``FINOPS_TINY_STEP_SLEEP_SECONDS`` slows each step down so the demo
container (and the signal tests) can be watched and interrupted mid-run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from finops.training.job import TrainingJob

FEATURES = 8
HIDDEN = 16
SAMPLES = 256
BATCH_SIZE = 16
JITTER = 0.01


class TinySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINOPS_TINY_", extra="ignore")

    step_sleep_seconds: float = Field(default=0.0, ge=0)
    learning_rate: float = Field(default=0.01, gt=0)


class TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(HIDDEN, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def synthetic_dataset(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed + 7919)
    x = torch.randn(SAMPLES, FEATURES, generator=generator)
    weights = torch.randn(FEATURES, 1, generator=generator)
    y = x @ weights + 0.1 * torch.randn(SAMPLES, 1, generator=generator)
    return x, y


def build(*, seed: int, total_steps: int, settings: TinySettings | None = None) -> TrainingJob:
    settings = settings or TinySettings()
    x, y = synthetic_dataset(seed)
    model = TinyModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    model.train()

    def get_batch(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        jitter = torch.from_numpy(np.random.normal(0.0, JITTER, size=(len(indices), FEATURES)).astype(np.float32))
        return x[indices] + jitter, y[indices]

    def loss(net: torch.nn.Module, batch: Any) -> torch.Tensor:
        if settings.step_sleep_seconds:
            time.sleep(settings.step_sleep_seconds)
        inputs, targets = batch
        return torch.nn.functional.mse_loss(net(inputs), targets)

    return TrainingJob(model=model, optimizer=optimizer, scheduler=scheduler, dataset_size=SAMPLES,
                       batch_size=BATCH_SIZE, get_batch=get_batch, loss=loss, max_grad_norm=1.0)
