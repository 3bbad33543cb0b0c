"""The spot-training branch of the project's exception tree (``finops.errors``).

Lambda reports a raised exception's class name as the ``errorType``, and Step Functions matches Retry/Catch
``ErrorEquals`` on exactly that name: ``finops.spot.sfn_errors`` turns this tree into those lists.
"""

from __future__ import annotations

from ..errors import FinOpsError, InvalidRequest


class InvalidJobSpec(InvalidRequest):
    """The execution input is not a valid ``JobSpec`` (fails the execution at once: never retried)."""

    code = "invalid_job_spec"


class SpotTrainingError(FinOpsError):
    """A spot-training task could not do its job for a reason that retrying will not fix."""

    code = "spot_training_error"


class NoQueueForZone(SpotTrainingError):
    """The hunter chose a zone this deployment has no Spot job queue for (the hunt is limited to those)."""

    code = "no_queue_for_zone"
