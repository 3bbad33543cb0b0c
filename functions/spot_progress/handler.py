"""Step Functions task ReadProgress: how far the checkpointed training got (progress.json)."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from finops.spot import service
from finops.spot.workflow import ProgressInput

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return service.read_progress(ProgressInput.model_validate(event)).model_dump(mode="json")
