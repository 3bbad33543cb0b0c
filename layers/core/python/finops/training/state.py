"""What a checkpoint captures, and how to put it back exactly.

A checkpoint holds everything the next step depends on: the model's weights, the optimizer's state, the LR
scheduler's state, the torch / numpy / python RNG states (so dropout and any random augmentation replay the
same draws) and the data position: the epoch and the index into that epoch's seeded permutation. The
permutation itself is not stored; it is recomputed from ``(seed, epoch)``, so data order survives a resume.

Payloads are serialised with ``torch.save`` and read back with ``torch.load(weights_only=True)``: a checkpoint
fetched from S3 is data, never code to unpickle. Anything that ``weights_only`` would refuse (numpy arrays in
numpy's RNG state) is converted to plain lists first.
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field

FORMAT_VERSION = 1


class DataPosition(BaseModel, frozen=True):
    """Where the next batch starts: ``index`` into the permutation of ``epoch``."""

    epoch: int = Field(default=0, ge=0)
    index: int = Field(default=0, ge=0)


def epoch_order(seed: int, epoch: int, dataset_size: int) -> torch.Tensor:
    """The seeded permutation of ``range(dataset_size)`` for ``epoch``; the same on every machine and run.

    A private generator keeps the global RNG untouched, so data order does not depend on what the model
    draws (and the other way round).
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(dataset_size, generator=generator)


def next_batch_indices(position: DataPosition, *, seed: int, dataset_size: int,
                       batch_size: int) -> tuple[torch.Tensor, DataPosition]:
    """The indices of the next full batch and the position after it (a partial tail batch is dropped)."""
    if batch_size > dataset_size:
        raise ValueError(f"batch_size {batch_size} exceeds the dataset's {dataset_size} samples")
    if position.index + batch_size > dataset_size:
        position = DataPosition(epoch=position.epoch + 1, index=0)
    order = epoch_order(seed, position.epoch, dataset_size)
    indices = order[position.index:position.index + batch_size]
    return indices, DataPosition(epoch=position.epoch, index=position.index + batch_size)


# ------------------------------------------------------------------------------------------------------
# Determinism and RNG states
# ------------------------------------------------------------------------------------------------------


def make_deterministic(threads: int = 1) -> None:
    """Bitwise-reproducible kernels on one thread (CUDA also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8``)."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": numpy_state["state"]["key"].tolist(),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": numpy_state["bit_generator"],
        "state": {"key": np.asarray(numpy_state["key"], dtype=np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------------
# The whole training state
# ------------------------------------------------------------------------------------------------------


class Restored(BaseModel, frozen=True):
    step: int
    position: DataPosition


def capture(*, step: int, position: DataPosition, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Any | None, run_id: str) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "step": step,
        "position": position.model_dump(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": capture_rng(),
        "run_id": run_id,
    }


def restore(payload: Mapping[str, Any], *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Any | None) -> Restored:
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"unsupported checkpoint format {payload.get('format')!r}")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    restore_rng(payload["rng"])
    return Restored(step=payload["step"], position=DataPosition.model_validate(payload["position"]))


def to_bytes(payload: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
