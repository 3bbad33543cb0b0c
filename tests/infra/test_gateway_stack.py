"""The CDK app: what the gateway stack contains, and that cdk-nag (AwsSolutions) passes on it.

The app is synthesized once per module (synth costs seconds). It uses the real dependency layer
(``layers/deps/build``) when ``make layers`` has built it for the current runtime and
pyproject.toml, and an empty stub otherwise, so these tests never download anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks
from finops.ledger.model import LedgerRow
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection, LocalSecondaryIndex
from pynamodb.models import Model

from infra.app import STACK_NAME, build_app
from infra.constructs.layers import DepsLayerNotBuilt, GatewayLayers, check_deps_build
from infra.constructs.ledger_table import model_table_schema
from infra.runtime import (
    DEPS_LAYER_DIR,
    LAMBDA_ARCH,
    LAMBDA_PYTHON,
    STAMP_NAME,
    layer_stamp,
    project_dependencies,
)

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

REPORT = "validation-report.json"


@dataclass
class Synth:
    outdir: Path
    error: Exception | None
    template: dict[str, Any]
    report: dict[str, Any]

    @property
    def assertions(self) -> Template:
        return Template.from_json(self.template)

    def resources(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == cfn_type}

    def one(self, cfn_type: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(cfn_type)
        assert len(found) == 1, f"expected one {cfn_type}, found {sorted(found)}"
        return next(iter(found.items()))


def _stub_deps_layer(root: Path) -> Path:
    (root / "python").mkdir(parents=True)
    (root / STAMP_NAME).write_text(json.dumps(layer_stamp(project_dependencies())))
    return root


def _deps_layer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        check_deps_build(DEPS_LAYER_DIR)
        return DEPS_LAYER_DIR
    except DepsLayerNotBuilt:
        return _stub_deps_layer(tmp_path_factory.mktemp("deps-layer"))


def _synth(app: cdk.App, outdir: Path) -> tuple[Exception | None, dict[str, Any]]:
    """Synthesize; cdk-nag v3 reports through CDK's policy validation: a failed validation raises
    (jsii RuntimeError "ValidationFailed") and the report is written into the cloud assembly."""
    try:
        app.synth()
        error = None
    except RuntimeError as exc:
        error = exc
    report_file = outdir / REPORT
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    return error, report


def _nag(report: dict[str, Any]) -> dict[str, Any]:
    plugins = [p for p in report.get("pluginReports", []) if p["pluginName"] == "AwsSolutions"]
    assert len(plugins) == 1, f"no AwsSolutions report in the cloud assembly: {report}"
    return plugins[0]


def _findings(violations: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(v["ruleName"], c["constructPath"]) for v in violations for c in v["violatingConstructs"]}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(outdir, deps_layer_dir=_deps_layer_dir(tmp_path_factory))
    error, report = _synth(app, outdir)
    template = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
    return Synth(outdir, error, template, report)


# --- cdk-nag ------------------------------------------------------------------------------------------


def test_cdk_nag_has_no_unacknowledged_findings(synth: Synth) -> None:
    nag = _nag(synth.report)
    open_findings = sorted(_findings(nag["violations"]))
    assert open_findings == [], f"unacknowledged cdk-nag findings: {open_findings}"
    assert nag["conclusion"] == "success"
    assert synth.error is None, f"synth failed: {synth.error}"


def test_every_acknowledgment_is_specific_and_narrow(synth: Synth) -> None:
    suppressed = _nag(synth.report)["suppressedViolations"]
    assert suppressed, "expected the documented acknowledgments (APIG4, COG4, SMG4, ...)"
    for finding in suppressed:
        assert len(finding["reason"]) >= 60, f"vague reason: {finding['acknowledgedId']}: {finding['reason']}"
        # acknowledged on the resource or its own L2 construct, never on the stack or a whole capability
        assert finding["acknowledgedAt"].count("/") >= 2, finding
        for construct in finding["violatingConstructs"]:
            assert construct["constructPath"].startswith(finding["acknowledgedAt"]), finding
    # The reviewed list: a new acknowledgment must be added here on purpose.
    assert {f["acknowledgedId"].removeprefix("AwsSolutions::") for f in suppressed} == {
        "AwsSolutions-APIG2",  # validation in the Lambda (OpenAI error envelope)
        "AwsSolutions-APIG3",  # WAF optional
        "AwsSolutions-APIG4", "AwsSolutions-COG4",  # virtual keys checked in the Lambda
        "AwsSolutions-SMG4",  # third-party API keys: manual rotation
        "AwsSolutions-IAM5[Resource::*]",  # X-Ray has no resource-level permissions
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonAPIGatewayPushToCloudWatchLogs]",  # API Gateway's account CloudWatch role
    }


def test_cdk_nag_reports_violations_and_honours_acknowledgments(tmp_path: Path) -> None:
    """Proves the check above can fail: an unacknowledged non-compliant bucket fails the synth."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "NagCanary")
    s3.Bucket(stack, "Unacknowledged")  # no access logs (S1), no SSL-only policy (S10)
    acknowledged = s3.Bucket(stack, "Acknowledged")
    cdk.Validations.of(acknowledged).acknowledge(
        cdk.Acknowledgment(id="AwsSolutions::AwsSolutions-S1", reason="canary: access logs not wanted here"),
        cdk.Acknowledgment(id="AwsSolutions::AwsSolutions-S10", reason="canary: SSL policy not wanted here"),
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))

    error, report = _synth(app, tmp_path)

    assert error is not None and "Validation" in str(error)
    nag = _nag(report)
    assert nag["conclusion"] == "failure"
    assert {("AwsSolutions-S1", "NagCanary/Unacknowledged/Resource"),
            ("AwsSolutions-S10", "NagCanary/Unacknowledged/Resource")} <= _findings(nag["violations"])
    assert not any("Acknowledged/" in path for _, path in _findings(nag["violations"]))
    assert {("AwsSolutions-S1", "NagCanary/Acknowledged/Resource"),
            ("AwsSolutions-S10", "NagCanary/Acknowledged/Resource")} <= _findings(nag["suppressedViolations"])


# --- ledger table -------------------------------------------------------------------------------------


def test_table_keys_are_the_pynamodb_models(synth: Synth) -> None:
    schema = LedgerRow._get_schema()
    _, table = synth.one("AWS::DynamoDB::Table")
    props = table["Properties"]

    assert props["KeySchema"] == schema["key_schema"]
    assert props["KeySchema"] == [{"AttributeName": LedgerRow._hash_keyname, "KeyType": "HASH"}]
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(schema["attribute_definitions"], key=str)
    expected_gsis = [
        {"IndexName": i["index_name"], "KeySchema": i["key_schema"], "Projection": i["projection"]}
        for i in schema["global_secondary_indexes"]
    ]
    assert props["GlobalSecondaryIndexes"] == expected_gsis
    assert props["GlobalSecondaryIndexes"] == [{
        "IndexName": "by_day",
        "KeySchema": [{"AttributeName": "day_shard", "KeyType": "HASH"},
                      {"AttributeName": "ts", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }]
    assert "LocalSecondaryIndexes" not in props


def test_table_is_protected_and_encrypted_with_the_cmk(synth: Synth) -> None:
    key_id, key = synth.one("AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    _, table = synth.one("AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {
        "SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert props["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"


def test_model_table_schema_handles_range_keys_lsis_and_projections() -> None:
    class Other(Model):
        class Meta:
            table_name = "other"

        class ByScore(GlobalSecondaryIndex["Other"]):
            class Meta:
                index_name = "by_score"
                projection = KeysOnlyProjection()

            score = NumberAttribute(hash_key=True)

        class ByName(LocalSecondaryIndex["Other"]):
            class Meta:
                index_name = "by_name"
                projection = KeysOnlyProjection()

            pk = UnicodeAttribute(hash_key=True)
            name = UnicodeAttribute(range_key=True)

        pk = UnicodeAttribute(hash_key=True)
        sk = NumberAttribute(range_key=True)
        score = NumberAttribute()
        name = UnicodeAttribute()
        by_score = ByScore()
        by_name = ByName()

    schema = model_table_schema(Other)
    string, number = dynamodb.AttributeType.STRING, dynamodb.AttributeType.NUMBER
    assert (schema["keys"]["partition_key"].name, schema["keys"]["partition_key"].type) == ("pk", string)
    assert (schema["keys"]["sort_key"].name, schema["keys"]["sort_key"].type) == ("sk", number)
    (gsi,) = schema["global_secondary_indexes"]
    assert (gsi["index_name"], gsi["partition_key"].name, gsi["projection_type"]) == (
        "by_score", "score", dynamodb.ProjectionType.KEYS_ONLY)
    assert "sort_key" not in gsi
    (lsi,) = schema["local_secondary_indexes"]
    assert (lsi["index_name"], lsi["sort_key"].name) == ("by_name", "name")


# --- Lambda -------------------------------------------------------------------------------------------


def test_function_runtime_tracing_memory_and_env(synth: Synth) -> None:
    table_id, _ = synth.one("AWS::DynamoDB::Table")
    _, function = synth.one("AWS::Lambda::Function")
    props = function["Properties"]
    assert props["Runtime"] == f"python{LAMBDA_PYTHON}"
    assert props["Architectures"] == [LAMBDA_ARCH]
    assert props["Handler"] == "handler.lambda_handler"
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["MemorySize"] == 1024
    assert props["Timeout"] == 60
    assert props["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "finops-gateway",
        "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
        "FINOPS_LEDGER_TABLE": {"Ref": table_id},
        "LOG_LEVEL": "INFO",
    }
    log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
    assert synth.template["Resources"][log_group]["Properties"]["RetentionInDays"] == 365


def test_function_has_the_core_and_deps_layers(synth: Synth) -> None:
    layers = synth.resources("AWS::Lambda::LayerVersion")
    assert len(layers) == 2
    for layer in layers.values():
        assert layer["Properties"]["CompatibleRuntimes"] == [f"python{LAMBDA_PYTHON}"]
        assert layer["Properties"]["CompatibleArchitectures"] == [LAMBDA_ARCH]
    _, function = synth.one("AWS::Lambda::Function")
    assert sorted(ref["Ref"] for ref in function["Properties"]["Layers"]) == sorted(layers)
    assert any("Core" in layer_id for layer_id in layers) and any("Deps" in layer_id for layer_id in layers)


def test_function_role_is_least_privilege(synth: Synth) -> None:
    table_id, _ = synth.one("AWS::DynamoDB::Table")
    _, role = synth.one("AWS::IAM::Policy")
    statements = role["Properties"]["PolicyDocument"]["Statement"]
    as_list = [[s["Action"]] if isinstance(s["Action"], str) else s["Action"] for s in statements]
    actions = {action for group in as_list for action in group}
    assert {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"} <= actions
    assert not any(a.endswith("*") for a in actions), actions
    query = next(s for s in statements if s["Action"] == "dynamodb:Query")
    assert query["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [table_id, "Arn"]}, "/index/by_day"]]}
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert [sorted(s["Action"]) for s in wildcard] == [["xray:PutTelemetryRecords", "xray:PutTraceSegments"]]
    # No AWS-managed policies on the function's role (only API Gateway's account role has one).
    roles = synth.resources("AWS::IAM::Role")
    lambda_roles = [r for r in roles.values()
                    if "lambda.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])]
    assert len(lambda_roles) == 1 and "ManagedPolicyArns" not in lambda_roles[0]["Properties"]


# --- secrets ------------------------------------------------------------------------------------------


def test_provider_secrets_exist_encrypted_and_readable_by_the_function(synth: Synth) -> None:
    key_id, _ = synth.one("AWS::KMS::Key")
    secrets = synth.resources("AWS::SecretsManager::Secret")
    by_name = {s["Properties"]["Name"]: sid for sid, s in secrets.items()}
    assert set(by_name) == {"finops/providers/openai", "finops/providers/groq"}
    for secret_id in by_name.values():
        assert secrets[secret_id]["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        synth.assertions.has_resource_properties("AWS::IAM::Policy", {
            "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
                "Action": Match.array_with(["secretsmanager:GetSecretValue"]),
                "Effect": "Allow",
                "Resource": {"Ref": secret_id},
            })])},
        })
    # ... and may decrypt them, through Secrets Manager only
    role_id, _ = next((rid, r) for rid, r in synth.resources("AWS::IAM::Role").items()
                      if "lambda.amazonaws.com" in json.dumps(r))
    key_policy = synth.template["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    assert any(s["Principal"] == {"AWS": {"Fn::GetAtt": [role_id, "Arn"]}} and "kms:Decrypt" in s["Action"]
               and "secretsmanager." in json.dumps(s["Condition"]) for s in key_policy)


# --- REST API -----------------------------------------------------------------------------------------


def _paths(synth: Synth) -> dict[str, str]:
    """Logical id -> full path of every API Gateway resource (the RestApi root is "/")."""
    api_id, _ = synth.one("AWS::ApiGateway::RestApi")
    resources = synth.resources("AWS::ApiGateway::Resource")

    def path(ref: dict[str, Any]) -> str:
        if "Fn::GetAtt" in ref:
            assert ref["Fn::GetAtt"] == [api_id, "RootResourceId"]
            return ""
        props = resources[ref["Ref"]]["Properties"]
        return f"{path(props['ParentId'])}/{props['PathPart']}"

    return {rid: path({"Ref": rid}) for rid in resources}


def test_api_routes_reach_the_function(synth: Synth) -> None:
    paths = _paths(synth)
    function_id, _ = synth.one("AWS::Lambda::Function")
    routes = set()
    for method in synth.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        ref = props["ResourceId"]
        routes.add((paths[ref["Ref"]] if "Ref" in ref else "/", props["HttpMethod"]))
        assert props["AuthorizationType"] == "NONE"  # virtual keys are checked in the Lambda
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert function_id in json.dumps(props["Integration"]["Uri"])
    expected = {("/v1/chat/completions", "POST"), ("/v1/models", "GET"), ("/{proxy+}", "ANY"), ("/", "ANY")}
    assert expected <= routes


def test_prod_stage_logs_traces_and_throttles(synth: Synth) -> None:
    _, stage = synth.one("AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert props["StageName"] == "prod"
    assert props["TracingEnabled"] is True
    access_log = props["AccessLogSetting"]
    log_group_id = access_log["DestinationArn"]["Fn::GetAtt"][0]
    assert synth.template["Resources"][log_group_id]["Type"] == "AWS::Logs::LogGroup"
    fields = json.loads(access_log["Format"])  # JSON access logs
    assert fields["requestId"] == "$context.requestId" and fields["status"] == "$context.status"
    assert "Authorization" not in access_log["Format"]
    (settings,) = props["MethodSettings"]
    assert settings["LoggingLevel"] == "INFO"
    assert settings["DataTraceEnabled"] is False
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (100, 200)
    synth.assertions.resource_count_is("AWS::ApiGateway::Account", 1)  # cloud_watch_role=True


def test_outputs(synth: Synth) -> None:
    outputs = synth.template["Outputs"]
    assert {"ApiUrl", "OpenAIBaseUrl", "LedgerTableName", "OpenaiSecretArn", "GroqSecretArn"} <= set(outputs)
    table_id, _ = synth.one("AWS::DynamoDB::Table")
    assert outputs["LedgerTableName"]["Value"] == {"Ref": table_id}
    assert "execute-api" in json.dumps(outputs["ApiUrl"]["Value"])


# --- deps layer guard ---------------------------------------------------------------------------------


def test_missing_deps_build_fails_with_make_layers_hint(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path / "out")), "NoDeps")
    with pytest.raises(DepsLayerNotBuilt, match="make layers"):
        GatewayLayers(stack, "Layers", deps_dir=tmp_path / "empty")


def test_stale_deps_build_fails_with_make_layers_hint(tmp_path: Path) -> None:
    stale = _stub_deps_layer(tmp_path / "deps")
    (stale / STAMP_NAME).write_text(json.dumps({**layer_stamp(project_dependencies()), "python": "3.9"}))
    with pytest.raises(DepsLayerNotBuilt, match=r"stale.*make layers"):
        check_deps_build(stale)
