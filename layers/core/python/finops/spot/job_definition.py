"""A revision of the deployed base job definition that runs a job spec's image.

Batch cannot override a job's image at SubmitJob, so each image gets its own revision of the base definition
(same resources, job role, retry strategy, timeout, tags). The latest ACTIVE revision is reused when it
already runs the image, so starting many executions of one image registers one revision.
"""

from __future__ import annotations

from typing import Any

from .errors import SpotTrainingError

# What RegisterJobDefinition accepts from a described job definition (besides the name).
_COPIED = ("type", "parameters", "retryStrategy", "propagateTags", "timeout", "tags", "platformCapabilities")


def latest_active(batch: Any, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    for page in batch.get_paginator("describe_job_definitions").paginate(jobDefinitionName=name, status="ACTIVE"):
        found.extend(page.get("jobDefinitions", []))
    if not found:
        raise SpotTrainingError(f"job definition {name!r} has no ACTIVE revision (is the stack deployed?)")
    return max(found, key=lambda d: int(d["revision"]))


def revision_for_image(batch: Any, name: str, image: str) -> str:
    """The ARN of an ACTIVE revision of ``name`` whose container runs ``image`` (registered if needed)."""
    base = latest_active(batch, name)
    container = dict(base.get("containerProperties") or {})
    if container.get("image") == image:
        return str(base["jobDefinitionArn"])
    container["image"] = image
    request = {key: base[key] for key in _COPIED if base.get(key) is not None}
    response = batch.register_job_definition(jobDefinitionName=name, containerProperties=container, **request)
    return str(response["jobDefinitionArn"])
