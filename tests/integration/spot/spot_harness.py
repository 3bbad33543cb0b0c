"""Harness of the spot-training workflow tests: the state machine that CDK synthesizes, executed by moto.

What is real: the ASL definition (taken from the synthesized template, its ``Fn::Join`` resolved with the
ARNs of the moto resources created here from the same template), moto's interpreter (``batch:submitJob.sync``,
Lambda tasks, SNS), the task Lambdas' handler code (``functions/spot_*``), DynamoDB, S3, SNS/SQS, Batch's API,
EC2's DescribeAvailabilityZones, and the Spot price history rows (the bundled 2022-05-31 file).

What is patched, narrowly (and why):

1. ``moto.awslambda.models.LambdaFunction._invoke_lambda``: moto runs function code in Docker; here it calls
   the real ``functions/<dir>/handler.py`` in-process with the function's environment from the template.
2. ``moto.batch_simple.models.BatchSimpleBackend._mark_job_as_finished``: moto's Docker-less Batch succeeds or
   fails every job alike (``MOTO_SIMPLE_BATCH_FAIL_AFTER``) with no status reason. A scripted "container"
   decides each job's outcome in submit order: it writes ``progress.json`` as the training entrypoint does,
   sets the attempts' running time, and the status reason Batch gives (``Host EC2 (instance i-...)
   terminated.`` for a preemption).
3. DescribeSpotPriceHistory only (moto returns placeholder prices): a ``before-call`` hook on the hunter's
   EC2 client serves the real rows, shifted so the file's last row is an hour old, in pages.
   GetSpotPlacementScores (not implemented by moto) answers ``UnauthorizedOperation``, as for a role without it.
4. moto's Step Functions ``.sync`` poll interval (0.5 s) is lowered to keep the tests fast.
5. ``StateTaskServiceBatch._normalise_parameters/_normalise_response``: moto 5.2.5 ported Step Functions'
   request/response normalisation (ASL's ``JobDefinition`` <-> boto's ``jobDefinition``) from LocalStack but
   left both hooks as no-ops, so ``batch:submitJob.sync`` with the parameters real Step Functions takes fails
   (``KeyError: 'JobDefinition'``). The patch calls moto's own ``_to_boto_request``/``_from_boto_response``
   with botocore's Batch operation shapes, which is what LocalStack does; the job description the workflow
   then sees is PascalCase, as in AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import botocore.session
import pytest
from aws_cdk import aws_kms as kms
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from finops import aws
from finops.ledger import model as ledger_model
from finops.ledger.repository import entry_of_item
from finops.local.lambda_runtime import LocalContext, load_handler
from finops.settings import get_settings
from finops.spot import preemptions as preemption_model
from finops.spot.market import bundled_price_file, load_price_file
from finops.spot.settings import get_spot_settings

from infra.constructs.ledger_table import LedgerTable
from infra.runtime import STAMP_NAME, layer_stamp, project_dependencies
from infra.stacks.spot_training_stack import SpotTrainingStack

REGION, ACCOUNT = "us-east-1", "123456789012"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com"}
FUNCTION_DIRS = {"Prepare": "spot_prepare", "Hunter": "spot_hunter", "Attempt": "spot_attempt",
                 "Progress": "spot_progress"}
PREEMPTION_REASON = "Host EC2 (instance i-0123456789abcdef0) terminated."
PAGE_SIZE = 2


# --- the synthesized templates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Templates:
    spot: dict[str, Any]
    ledger: dict[str, Any]

    def of_type(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.spot["Resources"].items() if v["Type"] == cfn_type}


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    """The spot-training stack as ``cdk synth`` emits it, beside a stack holding only the ledger table."""
    root = tmp_path_factory.mktemp("spot-synth")
    deps = root / "deps"
    (deps / "python").mkdir(parents=True)
    (deps / "chargeback" / "python").mkdir(parents=True)
    (deps / STAMP_NAME).write_text(json.dumps(layer_stamp(project_dependencies())))
    app = cdk.App(outdir=str(root / "out"))
    ledger_stack = cdk.Stack(app, "Ledger")
    ledger = LedgerTable(ledger_stack, "Ledger", encryption_key=kms.Key(ledger_stack, "Key"))
    SpotTrainingStack(app, "SpotTraining", ledger=ledger, deps_layer_dir=deps)
    assembly = app.synth()
    read = lambda name: json.loads(Path(assembly.directory, f"{name}.template.json").read_text())  # noqa: E731
    return Templates(spot=read("SpotTraining"), ledger=read("Ledger"))


class Resolver:
    """Evaluates the CloudFormation intrinsics CDK emits here (Ref, Fn::GetAtt, Fn::Join, Fn::ImportValue)."""

    def __init__(self, values: dict[str, dict[str, str]], imports: dict[str, str]) -> None:
        self.values, self.imports = values, imports

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self(n) for n in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            name = node["Ref"]
            return PSEUDO[name] if name in PSEUDO else self.values[name]["Ref"]
        if set(node) == {"Fn::GetAtt"}:
            logical_id, attribute = node["Fn::GetAtt"]
            return self.values[logical_id][attribute]
        if set(node) == {"Fn::Join"}:
            sep, parts = node["Fn::Join"]
            return sep.join(str(self(p)) for p in parts)
        if set(node) == {"Fn::ImportValue"}:
            return self.imports[node["Fn::ImportValue"]]
        return {k: self(v) for k, v in node.items()}


# --- the scripted Batch "container" ----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One Batch job's fate: how long each attempt ran, how it ended, how many steps it trained."""

    kind: str  # "preempt" | "timebox" | "finish" | "fail"
    attempt_seconds: tuple[int, ...]
    steps: int = 0

    @property
    def success(self) -> bool:
        return self.kind in ("timebox", "finish")


@dataclass
class SubmittedJob:
    job_id: str
    queue_arn: str
    environment: dict[str, str]
    run: Run


@dataclass
class World:
    templates: Templates
    suffix: str
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    function_dirs: dict[str, str] = field(default_factory=dict)
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)
    script: list[Run] = field(default_factory=list)
    jobs: list[SubmittedJob] = field(default_factory=list)
    price_calls: list[dict[str, Any]] = field(default_factory=list)
    steps_done: int = 0
    ledger_table: str = ""
    preemptions_table: str = ""
    state_machine_arn: str = ""
    alerts_queue_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what tests read -----------------------------------------------------------------------------------

    def queue_arn(self, logical_prefix: str) -> str:
        found = [v["Ref"] for k, v in self.values.items() if k.startswith(logical_prefix)
                 and v.get("type") == "AWS::Batch::JobQueue"]
        assert len(found) == 1, (logical_prefix, found)
        return found[0]

    def start(self, spec: dict[str, Any], runs: list[Run], *, timeout: float = 30.0) -> dict[str, Any]:
        self.script = list(runs)
        self.jobs.clear()
        self.steps_done = 0
        sfn = boto3.client("stepfunctions", region_name=REGION)
        name = f"run-{uuid.uuid4().hex[:12]}"
        arn = sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                  input=json.dumps({"spec": spec}))["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            execution = sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                break
            assert time.monotonic() < deadline, "execution did not finish"
            time.sleep(0.02)
        execution["history"] = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        execution["name"] = name
        return execution

    def ledger_entries(self, run_id: str) -> list[Any]:
        items = aws.client("dynamodb").scan(TableName=self.ledger_table, ConsistentRead=True)["Items"]
        entries = [entry_of_item(item) for item in items]
        return sorted((e for e in entries if e.request_id.startswith(f"spot:{run_id}:")),
                      key=lambda e: int(e.request_id.split(":")[2]))

    def alerts(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        messages = sqs.receive_message(QueueUrl=self.alerts_queue_url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=0).get("Messages", [])
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]

    # -- the fake container ----------------------------------------------------------------------------------

    def finish_job(self, backend: Any, include_start_attempt: bool, job: Any) -> None:
        """Replaces ``BatchSimpleBackend._mark_job_as_finished``: the next scripted run decides the job."""
        from moto.batch.models import datetime2int_milliseconds

        backend.backend._jobs[job.job_id] = job
        with self.lock:
            assert self.script, "a Batch job was submitted that the test did not script"
            run = self.script.pop(0)
        overrides = job.container_overrides or {}
        env = {e.get("name", e.get("Name")): e.get("value", e.get("Value"))
               for e in overrides.get("environment", overrides.get("Environment", []))}
        self.jobs.append(SubmittedJob(job.job_id, job.job_queue.arn, env, run))
        self._write_progress(env, run)

        now = datetime.now()  # moto's clock: naive local time
        started = now - timedelta(seconds=sum(run.attempt_seconds))
        job.log_stream_name = job._stream_name
        moment = started
        for index, seconds in enumerate(run.attempt_seconds):
            job.job_started_at = moment
            job._start_attempt()
            moment += timedelta(seconds=seconds)
            job.latest_attempt["stoppedAt"] = datetime2int_milliseconds(moment)
            if index < len(run.attempt_seconds) - 1 and run.kind == "preempt":
                job.latest_attempt["statusReason"] = PREEMPTION_REASON  # retried in place by the job definition
        job.job_started_at = started
        if run.kind == "preempt":
            job.job_stopped_reason = PREEMPTION_REASON
        elif run.kind == "fail":
            job.job_stopped_reason = "Essential container in task exited"
            job.exit_code = 1
        else:
            job.exit_code = 0
        job._mark_stopped(success=run.success)

    def _write_progress(self, env: dict[str, str], run: Run) -> None:
        total = int(env["FINOPS_TOTAL_STEPS"])
        self.steps_done = total if run.kind == "finish" else min(self.steps_done + run.steps, total)
        bucket, _, prefix = env["FINOPS_CHECKPOINT_URI"].removeprefix("s3://").partition("/")
        body = {"step": self.steps_done, "total_steps": total, "done": self.steps_done >= total}
        boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=f"{prefix}progress.json",
                                                          Body=json.dumps(body).encode())

    # -- moto's Lambda, running the real handlers ------------------------------------------------------------

    def invoke(self, function: Any, event: Any = None) -> tuple[str, bool, str]:
        """Replaces ``LambdaFunction._invoke_lambda``: the function's own handler, its environment, in-process."""
        name = function.function_name
        handler = load_handler(self.function_dirs[name])
        env = {**self.function_env[name], "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        get_settings.cache_clear()
        get_spot_settings.cache_clear()
        try:
            result = handler(event if isinstance(event, dict) else json.loads(event or "{}"), LocalContext(name))
            return json.dumps(result), False, ""
        except Exception as exc:  # Lambda reports the exception as the function error
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}), True, ""
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()
            get_spot_settings.cache_clear()


# --- price history for the hunter ------------------------------------------------------------------------


def _serve_price_history(ec2: Any, now: datetime, world_calls: list[dict[str, Any]]) -> None:
    names = {z["ZoneId"]: z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    rows = [r for r in load_price_file(bundled_price_file()) if r.az_id in names and r.product_description
            in ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")]
    shift = (now - timedelta(hours=1)) - max(r.ts for r in rows)

    def describe(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = params["body"]  # the serialized EC2 query: InstanceType.1=..., EndTime=..., NextToken=...
        types = {v for k, v in body.items() if k.startswith("InstanceType.")}
        end = datetime.fromisoformat(body["EndTime"].replace("Z", "+00:00")) if "EndTime" in body else now
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
        matching = [
            {"AvailabilityZone": names[r.az_id], "InstanceType": r.instance_type,
             "ProductDescription": "Linux/UNIX (Amazon VPC)", "SpotPrice": f"{r.price_usd:f}",
             "Timestamp": r.ts + shift}
            for r in rows if (not types or r.instance_type in types) and r.ts + shift <= end]
        start = int(body.get("NextToken") or 0)
        page: dict[str, Any] = {"SpotPriceHistory": matching[start:start + PAGE_SIZE]}
        if start + PAGE_SIZE < len(matching):
            page["NextToken"] = str(start + PAGE_SIZE)
        world_calls.append(body)
        return AWSResponse("https://ec2.us-east-1.amazonaws.com/", 200, {}, None), page

    def placement_denied(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "not authorized"}},
                          "GetSpotPlacementScores")

    ec2.meta.events.register("before-call.ec2.DescribeSpotPriceHistory", describe)
    ec2.meta.events.register("before-call.ec2.GetSpotPlacementScores", placement_denied)


# --- moto's missing Batch normalisation (patch 5) -----------------------------------------------------------


def _batch_operation(action: str) -> Any:
    """``submitJob`` / ``describe_jobs`` -> botocore's Batch operation model."""
    name = "".join(part[:1].upper() + part[1:] for part in action.split("_"))
    return botocore.session.get_session().get_service_model("batch").operation_model(name)


def _normalise_parameters(task: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                          service_action_name: str | None = None) -> None:
    task._to_boto_request(parameters, _batch_operation(service_action_name or task.resource.api_action).input_shape)


def _normalise_response(task: Any, response: Any, boto_service_name: str | None = None,
                        service_action_name: str | None = None) -> None:
    task._from_boto_response(response, _batch_operation(service_action_name or task.resource.api_action).output_shape)


# --- the world: moto resources from the template ------------------------------------------------------------


def _build(world: World) -> None:
    t, suffix, values = world.templates, world.suffix, world.values
    iam = boto3.client("iam", region_name=REGION)
    role_arn = iam.create_role(RoleName=f"spot-it-{suffix}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    # the ledger table lives in the other stack: its exports resolve to the moto table
    world.ledger_table = f"it-spot-ledger-{suffix}"
    ledger_model.bind(world.ledger_table).create_table(wait=True)
    ledger_values = {k: {"Ref": world.ledger_table, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/x"}
                     for k, v in t.ledger["Resources"].items() if v["Type"] == "AWS::DynamoDB::Table"}
    ledger_values.update({k: {"Ref": "key", "Arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/x"}
                          for k, v in t.ledger["Resources"].items() if v["Type"] == "AWS::KMS::Key"})
    imports = {o["Export"]["Name"]: Resolver(ledger_values, {})(o["Value"])
               for o in t.ledger.get("Outputs", {}).values() if "Export" in o}
    resolve = Resolver(values, imports)

    (table_id,) = t.of_type("AWS::DynamoDB::Table")
    world.preemptions_table = f"it-spot-preemptions-{suffix}"
    preemption_model.PreemptionStore(world.preemptions_table).model.create_table(wait=True)
    values[table_id] = {"Ref": world.preemptions_table}

    s3 = boto3.client("s3", region_name=REGION)
    for logical_id in t.of_type("AWS::S3::Bucket"):
        name = f"it-{logical_id.lower()[:30]}-{suffix}"
        s3.create_bucket(Bucket=name)
        values[logical_id] = {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}

    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    (topic_id,) = t.of_type("AWS::SNS::Topic")
    topic_arn = sns.create_topic(Name=f"it-spot-alerts-{suffix}")["TopicArn"]
    values[topic_id] = {"Ref": topic_arn}
    world.alerts_queue_url = sqs.create_queue(QueueName=f"it-spot-alerts-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=world.alerts_queue_url,
                                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    batch = boto3.client("batch", region_name=REGION)
    for logical_id in t.of_type("AWS::Batch::ComputeEnvironment"):
        arn = batch.create_compute_environment(computeEnvironmentName=f"{logical_id[:40]}-{suffix}",
                                               type="UNMANAGED", state="ENABLED",
                                               serviceRole=role_arn)["computeEnvironmentArn"]
        values[logical_id] = {"Ref": arn}
    for logical_id, resource in t.of_type("AWS::Batch::JobQueue").items():
        order = resolve(resource["Properties"]["ComputeEnvironmentOrder"])
        arn = batch.create_job_queue(
            jobQueueName=f"{logical_id[:40]}-{suffix}", state="ENABLED", priority=1,
            computeEnvironmentOrder=[{"order": o["Order"], "computeEnvironment": o["ComputeEnvironment"]}
                                     for o in order])["jobQueueArn"]
        values[logical_id] = {"Ref": arn, "type": "AWS::Batch::JobQueue"}
    (job_def_id, job_def), = t.of_type("AWS::Batch::JobDefinition").items()
    props = job_def["Properties"]
    container = props["ContainerProperties"]
    registered = batch.register_job_definition(
        jobDefinitionName=props["JobDefinitionName"], type=props["Type"],
        containerProperties={
            "image": container["Image"], "jobRoleArn": role_arn,
            "resourceRequirements": [{"type": r["Type"], "value": r["Value"]}
                                     for r in container["ResourceRequirements"]],
            "environment": [{"name": e["Name"], "value": e["Value"]} for e in container["Environment"]]},
        retryStrategy={"attempts": props["RetryStrategy"]["Attempts"],
                       "evaluateOnExit": [{k[:1].lower() + k[1:]: v for k, v in e.items()}
                                          for e in props["RetryStrategy"]["EvaluateOnExit"]]},
    )
    values[job_def_id] = {"Ref": registered["jobDefinitionArn"]}

    lam = boto3.client("lambda", region_name=REGION)
    functions = t.of_type("AWS::Lambda::Function")
    for logical_id in functions:
        kind = next(k for k in FUNCTION_DIRS if logical_id.startswith(f"SpotTraining{k}Function"))
        name = f"{logical_id[:40]}-{suffix}"
        world.function_dirs[name] = FUNCTION_DIRS[kind]
        arn = lam.create_function(FunctionName=name, Runtime="python3.12", Role=role_arn, Handler="handler.x",
                                  Code={"ZipFile": b"not used: the handler runs in-process"})["FunctionArn"]
        values[logical_id] = {"Ref": name, "Arn": arn}
    for logical_id, resource in functions.items():
        env = resolve(resource["Properties"].get("Environment", {}).get("Variables", {}))
        world.function_env[values[logical_id]["Ref"]] = {k: str(v) for k, v in env.items()}

    (machine,) = t.of_type("AWS::StepFunctions::StateMachine").values()
    definition = resolve(machine["Properties"]["DefinitionString"])
    world.state_machine_arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
        name=f"spot-training-{suffix}", definition=definition, roleArn=role_arn)["stateMachineArn"]


@pytest.fixture
def world(templates: Templates, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    from moto import mock_aws
    from moto.awslambda.models import LambdaFunction
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
        StateTaskServiceBatch,
    )

    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "FINOPS_")) or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(key, value)
    world = World(templates, uuid.uuid4().hex[:8])
    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", lambda fn, event=None: world.invoke(fn, event))
    monkeypatch.setattr(BatchSimpleBackend, "_mark_job_as_finished",
                        lambda backend, include_start_attempt, job: world.finish_job(backend, include_start_attempt,
                                                                                     job))
    monkeypatch.setattr(state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK", 0.01)
    monkeypatch.setattr(StateTaskServiceBatch, "_normalise_parameters", _normalise_parameters)
    monkeypatch.setattr(StateTaskServiceBatch, "_normalise_response", _normalise_response)

    mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": False}})
    mock.start(reset=False)
    aws.client.cache_clear()
    for model in (ledger_model.LedgerRow, preemption_model.PreemptionRow):
        model._connection = None
    try:
        _build(world)
        _serve_price_history(aws.client("ec2"), datetime.now(UTC), world.price_calls)
        yield world
    finally:
        with contextlib.suppress(Exception):
            ddb = aws.client("dynamodb")
            for table in (world.ledger_table, world.preemptions_table):
                ddb.delete_table(TableName=table)
        aws.client.cache_clear()
        for model in (ledger_model.LedgerRow, preemption_model.PreemptionRow):
            model._connection = None
        mock.stop(remove_data=False)

