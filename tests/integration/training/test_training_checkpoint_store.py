"""The S3 checkpoint store on moto: atomic saves, checksum-verified loads with fallback, retention."""

from __future__ import annotations

import json
from typing import Any

import pytest
from finops.training import tiny
from finops.training.checkpoint import CheckpointManifest
from finops.training.interruption import StopFlag, StopReason
from finops.training.loop import LoopConfig, train
from training_it_support import EVERY, TOTAL, assert_identical_training, snapshot


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def test_empty_prefix_loads_nothing(new_store: Any) -> None:
    assert new_store().load() is None
    assert new_store().read_progress() is None


def test_save_then_load_round_trips_with_a_verifiable_manifest(new_store: Any, s3: Any, bucket: str) -> None:
    store = new_store()
    manifest = store.save(50, b"weights-50", run_id="r1")

    loaded = store.load()
    assert loaded is not None and loaded.data == b"weights-50" and loaded.manifest == manifest
    raw = json.loads(s3.get_object(Bucket=bucket, Key="job/manifests/step-0000000050.json")["Body"].read())
    assert raw["step"] == 50 and raw["size"] == len(b"weights-50") and raw["run_id"] == "r1"
    assert raw["key"].startswith("job/objects/step-0000000050-") and len(raw["sha256"]) == 64
    assert CheckpointManifest.model_validate(raw).created_at.utcoffset().total_seconds() == 0


def test_crash_between_object_and_manifest_keeps_the_previous_checkpoint(new_store: Any, s3: Any,
                                                                        bucket: str) -> None:
    store = new_store()
    store.save(50, b"fifty")
    orphan = store.write_object(100, b"hundred")  # ... and the process dies before the manifest

    loaded = store.load()
    assert loaded is not None and loaded.manifest.step == 50 and loaded.data == b"fifty"
    # The next save (the redone step 100) cleans the orphan up.
    store.save(100, b"hundred, again")
    assert orphan not in keys(s3, bucket, "job/objects/")
    assert store.load().data == b"hundred, again"


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_damaged_latest_object_falls_back_to_the_previous_generation(new_store: Any, s3: Any, bucket: str,
                                                                     damage: str) -> None:
    store = new_store()
    store.save(50, b"fifty")
    latest = store.save(100, b"one hundred")
    if damage == "corrupt":
        s3.put_object(Bucket=bucket, Key=latest.key, Body=b"one hundreX")  # same size, wrong sha256
    elif damage == "truncate":
        s3.put_object(Bucket=bucket, Key=latest.key, Body=b"one")
    else:
        s3.delete_object(Bucket=bucket, Key=latest.key)

    loaded = store.load()
    assert loaded is not None and loaded.manifest.step == 50 and loaded.data == b"fifty"


def test_unreadable_manifest_falls_back(new_store: Any, s3: Any, bucket: str) -> None:
    store = new_store()
    store.save(50, b"fifty")
    store.save(100, b"hundred")
    s3.put_object(Bucket=bucket, Key=store.manifest_key(100), Body=b"{not json")

    assert store.load().manifest.step == 50


def test_keeps_the_last_k_generations_and_deletes_older(new_store: Any, s3: Any, bucket: str) -> None:
    store = new_store(keep=2)
    for step in (50, 100, 150, 200):
        store.save(step, f"state-{step}".encode())

    assert store.generations() == [200, 150]
    objects = keys(s3, bucket, "job/objects/")
    assert len(objects) == 2 and all("step-0000000200" in k or "step-0000000150" in k for k in objects)


def test_a_generation_skipped_as_corrupt_is_replaced_when_training_passes_it_again(new_store: Any, s3: Any,
                                                                                   bucket: str) -> None:
    store = new_store()
    store.save(50, b"fifty")
    bad = store.save(100, b"hundred")
    s3.put_object(Bucket=bucket, Key=bad.key, Body=b"garbage")
    assert store.load().manifest.step == 50
    store.save(73, b"seventy-three")  # resumed from 50, stopped at 73: generation 100 is stale now

    assert store.generations() == [73, 50]
    assert store.load().data == b"seventy-three"


def test_loop_crash_after_object_write_resumes_from_previous_and_ends_identical(new_store: Any,
                                                                              monkeypatch: Any) -> None:
    """The real loop: the manifest write of step 100 fails (the process dies there); resume redoes 51..100."""
    config = LoopConfig(total_steps=TOTAL, checkpoint_every=EVERY, seed=3)
    want = snapshot(train(tiny.build, new_store("reference"), config).job)

    store = new_store("job")
    real_write_manifest = store.write_manifest

    def dies_at_100(manifest: CheckpointManifest) -> None:
        if manifest.step == 100:
            raise SystemExit("killed between object and manifest")
        real_write_manifest(manifest)

    monkeypatch.setattr(store, "write_manifest", dies_at_100)
    with pytest.raises(SystemExit):
        train(tiny.build, store, config)
    assert any("step-0000000100" in key for key in store._list("objects/"))  # the object was written
    assert store.load().manifest.step == 50

    result = train(tiny.build, new_store("job"), config)
    assert result.resumed_from == 50 and result.reason is StopReason.FINISHED
    assert_identical_training(snapshot(result.job), want)


def test_loop_resumes_from_previous_generation_when_latest_is_corrupt(new_store: Any, s3: Any, bucket: str) -> None:
    config = LoopConfig(total_steps=TOTAL, checkpoint_every=EVERY, seed=5)
    want = snapshot(train(tiny.build, new_store("reference"), config).job)

    store = new_store("job")
    flag = StopFlag()
    train(tiny.build, store, config, stop=flag, after_step=lambda step: flag.set() if step == 120 else None)
    newest = store.read_manifest(120)
    s3.put_object(Bucket=bucket, Key=newest.key, Body=b"\x00" * newest.size)

    result = train(tiny.build, new_store("job"), config)
    assert result.resumed_from == 100
    assert_identical_training(snapshot(result.job), want)
