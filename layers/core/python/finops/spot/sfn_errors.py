"""The exception tree mapped to Step Functions Retry/Catch by name: the one place the workflow reads it.

Step Functions compares ``ErrorEquals`` with the Lambda ``errorType`` (the exception's class name) exactly,
without a class hierarchy, so every retryable class is listed by its own name, subclasses included.

- Retried (transient): the ``ServiceUnavailable`` tree (a dependency is down: DynamoDB, EC2, S3 after
  botocore's own retries) and the Lambda service's own errors.
- Not retried: everything else, notably ``InvalidRequest`` (``InvalidJobSpec``) and ``SpotTrainingError``:
  the execution fails with that error name, which the console shows.
- Batch jobs are not retried by Step Functions at all: their job definition's retry strategy retries a lost
  host once in place, and the workflow's Catch on ``States.TaskFailed`` tells a preemption from a failure.
"""

from __future__ import annotations

from ..errors import FinOpsError, ServiceUnavailable

LAMBDA_SERVICE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# What a Batch .sync task raises when the job ends FAILED (its Cause is the job's description as JSON), and
# when the task's own TimeoutSeconds ran out.
BATCH_JOB_FAILED = "States.TaskFailed"
TASK_TIMED_OUT = "States.Timeout"

RETRY_INTERVAL_SECONDS = 2
RETRY_MAX_ATTEMPTS = 3
RETRY_BACKOFF_RATE = 2.0


def _tree(root: type[FinOpsError]) -> list[type[FinOpsError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_tree(sub))
    return found


def retryable_errors() -> list[str]:
    """``ErrorEquals`` of the Lambda tasks' Retry: transient errors by exact name, sorted, no duplicates."""
    names = {cls.__name__ for cls in _tree(ServiceUnavailable)}
    return sorted(names) + list(LAMBDA_SERVICE_ERRORS)
