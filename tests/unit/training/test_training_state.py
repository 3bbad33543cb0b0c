"""What a checkpoint captures: data order, RNG states, and a weights_only-safe serialisation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from finops.training import state, tiny
from finops.training.state import DataPosition


def test_epoch_order_is_a_seeded_permutation_that_changes_per_epoch() -> None:
    a = state.epoch_order(seed=1, epoch=0, dataset_size=50)
    assert sorted(a.tolist()) == list(range(50))
    assert torch.equal(a, state.epoch_order(seed=1, epoch=0, dataset_size=50))
    assert not torch.equal(a, state.epoch_order(seed=1, epoch=1, dataset_size=50))
    assert not torch.equal(a, state.epoch_order(seed=2, epoch=0, dataset_size=50))


def test_epoch_order_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    state.epoch_order(seed=1, epoch=3, dataset_size=10)
    assert torch.equal(before, torch.get_rng_state())


def test_batches_walk_the_permutation_and_drop_the_partial_tail() -> None:
    position = DataPosition()
    seen: list[int] = []
    for _ in range(3):  # 10 samples, batches of 4: two per epoch, the last 2 samples are dropped
        indices, position = state.next_batch_indices(position, seed=5, dataset_size=10, batch_size=4)
        seen.extend(indices.tolist())
    order0 = state.epoch_order(5, 0, 10).tolist()
    order1 = state.epoch_order(5, 1, 10).tolist()
    assert seen == order0[:8] + order1[:4]
    assert position == DataPosition(epoch=1, index=4)


def test_batch_larger_than_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        state.next_batch_indices(DataPosition(), seed=0, dataset_size=3, batch_size=4)


def _draws() -> tuple[list[float], list[float], list[float]]:
    return torch.rand(3).tolist(), np.random.normal(size=3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_round_trip_through_bytes() -> None:
    state.seed_everything(123)
    _draws()
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    saved = state.from_bytes(state.to_bytes({"rng": state.capture_rng()}))["rng"]
    want = _draws()

    state.seed_everything(999)  # move every generator somewhere else
    _draws()
    state.restore_rng(saved)
    assert _draws() == want


def test_capture_restore_round_trip_of_model_optimizer_scheduler() -> None:
    state.seed_everything(0)
    job = tiny.build(seed=0, total_steps=10)
    loss = job.loss(job.model, job.get_batch(torch.arange(16)))
    loss.backward()
    job.optimizer.step()
    job.scheduler.step()
    payload = state.capture(step=1, position=DataPosition(epoch=0, index=16), model=job.model,
                            optimizer=job.optimizer, scheduler=job.scheduler, run_id="r")
    data = state.to_bytes(payload)

    state.seed_everything(1)
    other = tiny.build(seed=0, total_steps=10)
    restored = state.restore(state.from_bytes(data), model=other.model, optimizer=other.optimizer,
                             scheduler=other.scheduler)
    assert restored.step == 1 and restored.position == DataPosition(epoch=0, index=16)
    for name, tensor in job.model.state_dict().items():
        assert torch.equal(tensor, other.model.state_dict()[name])
    assert other.scheduler.state_dict() == job.scheduler.state_dict()
    assert torch.equal(other.optimizer.state_dict()["state"][0]["exp_avg"],
                       job.optimizer.state_dict()["state"][0]["exp_avg"])


def test_loading_refuses_pickled_code() -> None:
    """``weights_only``: a checkpoint from S3 cannot run code when it is loaded."""
    import io
    import pickle

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    buffer = io.BytesIO()
    torch.save({"x": Evil()}, buffer, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError):
        state.from_bytes(buffer.getvalue())


def test_unknown_format_is_refused() -> None:
    job = tiny.build(seed=0, total_steps=10)
    with pytest.raises(ValueError, match="format"):
        state.restore({"format": 99}, model=job.model, optimizer=job.optimizer, scheduler=job.scheduler)
