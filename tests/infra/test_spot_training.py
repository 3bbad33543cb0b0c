"""The spot-training stack as ``python infra/app.py`` synthesizes it: cdk-nag, Batch, storage, the state machine,
and the definition checked by asl-validator (npm, ``tools/asl``).

The app is synthesized once per module (with ``spot_training=True``, as ``infra/app.py`` does), with the real
dependency layer when ``make layers`` built it and an empty stub otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from finops.spot import sfn_errors
from finops.spot.attempts import PREEMPTION_REASON_PATTERN
from finops.spot.preemptions import TTL_ATTRIBUTE
from finops.spot.workflow import RunTotals

from infra.app import SPOT_STACK_NAME, STACK_NAME, build_app
from infra.constructs.layers import DepsLayerNotBuilt, check_deps_build
from infra.constructs.spot_training import SpotTrainingConfig
from infra.runtime import DEPS_LAYER_DIR, ROOT, STAMP_NAME, layer_stamp, project_dependencies

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

ASL_VALIDATOR = ROOT / "tools" / "asl" / "node_modules" / ".bin" / "asl-validator"
CONFIG = SpotTrainingConfig()


def _deps_layer_dir(tmp: Path) -> Path:
    try:
        check_deps_build(DEPS_LAYER_DIR)
        return DEPS_LAYER_DIR
    except DepsLayerNotBuilt:
        (tmp / "python").mkdir(parents=True)
        (tmp / "chargeback" / "python").mkdir(parents=True)
        (tmp / STAMP_NAME).write_text(json.dumps(layer_stamp(project_dependencies())))
        return tmp


class Synth:
    def __init__(self, outdir: Path, error: Exception | None) -> None:
        self.error = error
        self.template = json.loads((outdir / f"{SPOT_STACK_NAME}.template.json").read_text())
        self.gateway = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
        report = outdir / "validation-report.json"
        self.report = json.loads(report.read_text()) if report.is_file() else {}

    def resources(self, cfn_type: str, prefix: str = "") -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == cfn_type and k.startswith(prefix)}

    def one(self, cfn_type: str, prefix: str = "") -> tuple[str, dict[str, Any]]:
        found = self.resources(cfn_type, prefix)
        assert len(found) == 1, f"expected one {cfn_type} {prefix}*, found {sorted(found)}"
        return next(iter(found.items()))

    def definition(self, placeholder: str = "arn:aws:lambda:us-east-1:123456789012:function:placeholder") -> dict:
        """The state machine's ASL, every intrinsic replaced by ``placeholder`` (or the partition)."""
        _, machine = self.one("AWS::StepFunctions::StateMachine")
        parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
        text = "".join(p if isinstance(p, str) else ("aws" if p == {"Ref": "AWS::Partition"} else placeholder)
                       for p in parts)
        return json.loads(text)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(outdir, deps_layer_dir=_deps_layer_dir(tmp_path_factory.mktemp("deps")), spot_training=True)
    try:
        app.synth()
        error = None
    except RuntimeError as exc:
        error = exc
    return Synth(outdir, error)


# --- cdk-nag ------------------------------------------------------------------------------------------------


def _nag(synth: Synth) -> dict[str, Any]:
    (plugin,) = [p for p in synth.report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return plugin


def test_cdk_nag_passes_on_the_app_with_spot_training(synth: Synth) -> None:
    nag = _nag(synth)
    open_findings = sorted((v["ruleName"], c["constructPath"]) for v in nag["violations"]
                           for c in v["violatingConstructs"])
    assert open_findings == []
    assert synth.error is None, synth.error


def test_spot_acknowledgments_are_the_reviewed_narrow_list(synth: Synth) -> None:
    suppressed = [f for f in _nag(synth)["suppressedViolations"]
                  if f["acknowledgedAt"].startswith(f"{SPOT_STACK_NAME}/")]
    for finding in suppressed:
        assert len(finding["reason"]) >= 60, finding
        assert finding["acknowledgedAt"].count("/") >= 2, finding  # on a role, never the stack or the construct
        for construct in finding["violatingConstructs"]:
            assert construct["constructPath"].startswith(finding["acknowledgedAt"]), finding
    by_role = {(f["acknowledgedAt"].removeprefix(f"{SPOT_STACK_NAME}/SpotTraining/"),
                f["acknowledgedId"].removeprefix("AwsSolutions::AwsSolutions-")) for f in suppressed}
    checkpoints = next(iter(synth.resources("AWS::S3::Bucket", "SpotTrainingCheckpoints")))
    functions = {name: next(iter(synth.resources("AWS::Lambda::Function", f"SpotTraining{name}Function")))
                 for name in ("Prepare", "Hunter", "Attempt", "Progress")}
    xray = {(f"{name}/FunctionRole", "IAM5[Resource::*]") for name in functions}
    assert by_role == xray | {
        ("StateMachine/Role", "IAM5[Resource::*]"),
        *{("StateMachine/Role", f"IAM5[Resource::<{fid}.Arn>:*]") for fid in functions.values()},
        ("JobRole", f"IAM5[Resource::<{checkpoints}.Arn>/*]"),
        ("Progress/FunctionRole", f"IAM5[Resource::<{checkpoints}.Arn>/*]"),
        ("Prepare/FunctionRole", "IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:"
                                 f"job-definition/{SPOT_STACK_NAME}-training*]"),
        ("Batch/InstanceRole",
         "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]"),
    }


# --- network and Batch --------------------------------------------------------------------------------------


def test_one_subnet_per_az_id_and_a_spot_environment_pinned_to_each(synth: Synth) -> None:
    subnets = synth.resources("AWS::EC2::Subnet")
    by_id = {v["Properties"]["AvailabilityZoneId"]: k for k, v in subnets.items()}
    assert sorted(by_id) == sorted(CONFIG.az_ids)
    assert all("AvailabilityZone" not in v["Properties"] for v in subnets.values())  # IDs, never names
    spot = {k: v["Properties"]["ComputeResources"] for k, v in synth.resources("AWS::Batch::ComputeEnvironment").items()
            if v["Properties"]["ComputeResources"]["Type"] == "SPOT"}
    assert len(spot) == len(CONFIG.az_ids)
    pinned = set()
    for resources in spot.values():
        assert resources["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
        assert resources["MinvCpus"] == 0 and resources["InstanceTypes"] == list(CONFIG.instance_types)
        (subnet,) = resources["Subnets"]
        pinned.add(subnet["Ref"])
    assert pinned == set(subnets)
    _, on_demand = synth.one("AWS::Batch::ComputeEnvironment", "SpotTrainingBatchOnDemand")
    assert on_demand["Properties"]["ComputeResources"]["Type"] == "EC2"
    assert len(on_demand["Properties"]["ComputeResources"]["Subnets"]) == len(CONFIG.az_ids)
    queues = synth.resources("AWS::Batch::JobQueue")
    assert len(queues) == len(CONFIG.az_ids) + 1
    for queue in queues.values():
        (order,) = queue["Properties"]["ComputeEnvironmentOrder"]
        assert order["ComputeEnvironment"]["Ref"] in synth.resources("AWS::Batch::ComputeEnvironment")


def test_public_route_waits_for_the_internet_gateway_attachment(synth: Synth) -> None:
    attachment, _ = synth.one("AWS::EC2::VPCGatewayAttachment")
    _, route = synth.one("AWS::EC2::Route")
    assert route["Properties"]["DestinationCidrBlock"] == "0.0.0.0/0"
    assert attachment in route["DependsOn"]


def test_security_group_has_no_ingress_and_the_vpc_logs_rejected_flows(synth: Synth) -> None:
    _, group = synth.one("AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group["Properties"]
    _, flow = synth.one("AWS::EC2::FlowLog")
    assert flow["Properties"]["ResourceType"] == "VPC" and flow["Properties"]["TrafficType"] == "REJECT"


def test_job_definition_retries_a_lost_host_and_exits_on_anything_else(synth: Synth) -> None:
    _, job = synth.one("AWS::Batch::JobDefinition")
    props = job["Properties"]
    assert props["RetryStrategy"] == {"Attempts": 2, "EvaluateOnExit": [
        {"Action": "RETRY", "OnStatusReason": PREEMPTION_REASON_PATTERN}, {"Action": "EXIT", "OnReason": "*"}]}
    assert PREEMPTION_REASON_PATTERN == "Host EC2*"
    assert props["JobDefinitionName"] == f"{SPOT_STACK_NAME}-training"
    env = {e["Name"]: e["Value"] for e in props["ContainerProperties"]["Environment"]}
    assert env == {"FINOPS_CHECKPOINT_EVERY": "50"}
    role_id, _ = synth.one("AWS::IAM::Role", "SpotTrainingJobRole")
    assert props["ContainerProperties"]["JobRoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}


# --- storage and alerts --------------------------------------------------------------------------------------


def test_checkpoint_bucket_is_encrypted_tls_only_private_and_expires_old_checkpoints(synth: Synth) -> None:
    bucket_id, bucket = synth.one("AWS::S3::Bucket", "SpotTrainingCheckpoints")
    props = bucket["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-old-checkpoint-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    assert rules["expire-old-checkpoints"]["ExpirationInDays"] == 30
    assert "LoggingConfiguration" in props
    _, policy = synth.one("AWS::S3::BucketPolicy", "SpotTrainingCheckpointsPolicy")
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert policy["Properties"]["Bucket"] == {"Ref": bucket_id}


def test_preemptions_table_expires_items_and_the_alerts_topic_is_encrypted(synth: Synth) -> None:
    _, table = synth.one("AWS::DynamoDB::Table", "SpotTrainingPreemptions")
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert [k["AttributeName"] for k in table["Properties"]["KeySchema"]] == ["az_id", "at_key"]
    _, topic = synth.one("AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]


def test_the_attempt_function_writes_the_gateway_ledger(synth: Synth) -> None:
    _, attempt = synth.one("AWS::Lambda::Function", "SpotTrainingAttemptFunction")
    env = attempt["Properties"]["Environment"]["Variables"]
    assert "Fn::ImportValue" in env["FINOPS_LEDGER_TABLE"]
    exported = [o for o in synth.gateway["Outputs"].values() if "Export" in o]
    ledger = next(k for k in synth.gateway["Resources"] if k.startswith("LedgerTable"))
    assert {"Ref": ledger} in [o["Value"] for o in exported]


# --- the state machine ----------------------------------------------------------------------------------------


def test_states_are_named_for_what_they_do_and_wired_as_designed(synth: Synth) -> None:
    states = synth.definition()["States"]
    assert set(states) == {
        "InitTotals", "ValidateJobSpec", "HuntZone", "SpotZoneFound", "PlanSpotRun", "PlanOnDemandRun",
        "RunOnSpot", "RunOnDemand", "RecordRun", "RecordInterruptedRun", "PreemptedOrFailed", "ReadProgress",
        "TrainingFinished", "AlertAndStop", "Stopped", "TrainingFailed", "Done"}
    assert states["InitTotals"]["Result"] == RunTotals().model_dump(mode="json")
    for run in ("RunOnSpot", "RunOnDemand"):
        assert states[run]["Resource"] == "arn:aws:states:::batch:submitJob.sync"
        assert states[run]["Catch"] == [{"ErrorEquals": ["States.TaskFailed", "States.Timeout"],
                                         "ResultPath": "$.failure", "Next": "RecordInterruptedRun"}]
        assert states[run]["Next"] == "RecordRun"
    assert states["PreemptedOrFailed"]["Choices"][0] == {
        "Variable": "$.totals.last_outcome", "StringEquals": "failed", "Next": "TrainingFailed"}
    assert states["PreemptedOrFailed"]["Default"] == "PlanOnDemandRun"
    assert states["TrainingFinished"]["Default"] == "HuntZone"
    assert states["AlertAndStop"]["Next"] == "Stopped"
    assert states["Stopped"]["CausePath"] == "$.totals.limit_reason"


def test_on_demand_runs_are_time_boxed_and_the_state_times_out_a_bit_above(synth: Synth) -> None:
    states = synth.definition()["States"]
    on_demand, spot = states["RunOnDemand"], states["RunOnSpot"]
    env = {e["Name"]: e.get("Value") for e in on_demand["Parameters"]["ContainerOverrides"]["Environment"]}
    assert env["FINOPS_TIME_BOX_SECONDS"] == "600"
    assert {"FINOPS_CHECKPOINT_URI", "FINOPS_TOTAL_STEPS", "FINOPS_CHECKPOINT_EVERY", "FINOPS_RUN_ID"} <= set(env)
    assert 600 < on_demand["Parameters"]["Timeout"]["AttemptDurationSeconds"] < on_demand["TimeoutSeconds"]
    assert on_demand["TimeoutSeconds"] <= 600 + CONFIG.on_demand_start_allowance_seconds
    spot_env = {e["Name"] for e in spot["Parameters"]["ContainerOverrides"]["Environment"]}
    assert "FINOPS_TIME_BOX_SECONDS" not in spot_env and "TimeoutSeconds" not in spot


def test_lambda_tasks_retry_the_transient_errors_of_the_exception_tree_by_name(synth: Synth) -> None:
    states = synth.definition()["States"]
    tasks = [s for s in states.values() if s["Type"] == "Task" and "lambda" in s["Resource"]]
    assert len(tasks) == 5
    for task in tasks:
        (retry,) = task["Retry"]
        assert retry["ErrorEquals"] == sfn_errors.retryable_errors()
        assert "ServiceUnavailable" in retry["ErrorEquals"] and "InvalidJobSpec" not in retry["ErrorEquals"]


def test_state_machine_logs_everything_and_traces(synth: Synth) -> None:
    _, machine = synth.one("AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"


def test_asl_validator_accepts_the_synthesized_definition(synth: Synth, tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: asl-validator (npm) cannot run")
    assert ASL_VALIDATOR.exists(), "asl-validator is not installed: npm ci --prefix tools/asl (make asl-tools)"
    good = tmp_path / "definition.json"
    good.write_text(json.dumps(synth.definition()))
    result = subprocess.run([str(ASL_VALIDATOR), "--json-path", str(good)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # and it does reject a broken one (a Choice pointing nowhere), so the check above means something
    broken = synth.definition()
    broken["States"]["SpotZoneFound"]["Default"] = "NoSuchState"
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken))
    result = subprocess.run([str(ASL_VALIDATOR), "--json-path", str(bad)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0
