"""The CDK app: what the gateway stack contains, and that cdk-nag (AwsSolutions) passes on it.

The app is synthesized once per module (synth costs seconds). It uses the real dependency layer
(``layers/deps/build``) when ``make layers`` has built it for the current runtime and
pyproject.toml, and an empty stub otherwise, so these tests never download anything.

Resources are told apart by their logical id prefix, which CDK derives from the construct path
(``Ledger/Table`` -> ``LedgerTable...``, ``Admin/Function`` -> ``AdminFunction...``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks
from finops.budgets.table import TTL_ATTRIBUTE, BudgetItem
from finops.keys.model import ApiKey
from finops.ledger.model import LedgerRow
from finops.settings import Settings
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection, LocalSecondaryIndex
from pynamodb.models import Model

from infra.app import STACK_NAME, build_app
from infra.constructs.admin_api import ADMIN_FUNCTION_DIR
from infra.constructs.layers import DepsLayerNotBuilt, GatewayLayers, check_deps_build
from infra.constructs.ledger_table import model_table_schema
from infra.constructs.model_table import ModelTable
from infra.runtime import (
    DEPS_LAYER_DIR,
    GATEWAY_STREAM_FUNCTION_DIR,
    LAMBDA_ARCH,
    LAMBDA_PYTHON,
    STAMP_NAME,
    layer_stamp,
    project_dependencies,
)

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

REPORT = "validation-report.json"
TABLE, FUNCTION, POLICY = "AWS::DynamoDB::Table", "AWS::Lambda::Function", "AWS::IAM::Policy"
# logical id prefix -> the PynamoDB model the table is built from
TABLES = {"LedgerTable": LedgerRow, "KeysTable": ApiKey, "BudgetsTable": BudgetItem}
# logical id prefix of each function (and of its FunctionRole / FunctionLogs)
FUNCTIONS = ("GatewayFunction", "GatewayStreamFunction", "AdminFunction", "ReconcilerFunction",
             "ChargebackExporterFunction", "ChargebackFocusFunction")


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

    def one(self, cfn_type: str, prefix: str = "") -> tuple[str, dict[str, Any]]:
        """The single ``cfn_type`` resource whose logical id starts with ``prefix``."""
        found = {k: v for k, v in self.resources(cfn_type).items() if k.startswith(prefix)}
        assert len(found) == 1, f"expected one {cfn_type} {prefix}*, found {sorted(found)}"
        return next(iter(found.items()))

    def id_of(self, cfn_type: str, prefix: str = "") -> str:
        return self.one(cfn_type, prefix)[0]


def _stub_deps_layer(root: Path) -> Path:
    (root / "python").mkdir(parents=True)
    (root / "chargeback" / "python").mkdir(parents=True)
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


def _actions(statement: dict[str, Any]) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


def _getatt(logical_id: str, attribute: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, attribute]}


def _index_arn(table_id: str, index: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [_getatt(table_id), f"/index/{index}"]]}


def _grants(synth: Synth, function: str) -> dict[tuple[str, str | None], set[str]]:
    """(resource as JSON, kms:ViaService service or None) -> allowed actions, for one function's role."""
    role_id = synth.id_of("AWS::IAM::Role", f"{function}Role")
    policy_id, policy = synth.one(POLICY, f"{function}RoleDefaultPolicy")
    assert policy["Properties"]["Roles"] == [{"Ref": role_id}]
    attached = [pid for pid, p in synth.resources(POLICY).items() if {"Ref": role_id} in p["Properties"]["Roles"]]
    assert attached == [policy_id], "one policy per function role"
    grants: dict[tuple[str, str | None], set[str]] = {}
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        via = statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
        service = via["Fn::Join"][1][0].rstrip(".") if via else None
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            grants.setdefault((json.dumps(resource, sort_keys=True), service), set()).update(_actions(statement))
    return grants


def _g(resource: Any, service: str | None = None) -> tuple[str, str | None]:
    return json.dumps(resource, sort_keys=True), service


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
    chargeback_bucket = synth.id_of("AWS::S3::Bucket", "ChargebackBucket")
    assert {f["acknowledgedId"].removeprefix("AwsSolutions::") for f in suppressed} == {
        f"AwsSolutions-IAM5[Resource::<{chargeback_bucket}.Arn>/usage/*]",  # the exporter's own prefix
        f"AwsSolutions-IAM5[Resource::<{chargeback_bucket}.Arn>/focus/*]",  # the FOCUS export's own prefix
        "AwsSolutions-APIG2",  # validation in the Lambda (OpenAI error envelope)
        "AwsSolutions-APIG3",  # WAF optional
        "AwsSolutions-APIG4",  # OpenAI-compatible methods: virtual keys checked in the Lambda
        "AwsSolutions-COG4",  # ... those, and the admin methods: IAM (SigV4) instead of Cognito
        "AwsSolutions-SMG4",  # third-party API keys: manual rotation
        "AwsSolutions-IAM5[Resource::*]",  # X-Ray has no resource-level permissions
        # Bedrock models and inference profiles: the price catalog is the allow-list
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>::foundation-model/*]",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:"
        "inference-profile/*]",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonAPIGatewayPushToCloudWatchLogs]",  # API Gateway's account CloudWatch role
    }


def _acknowledged_at(synth: Synth, rule: str) -> dict[str, str]:
    """acknowledgedAt -> reason, for every acknowledgment of ``rule``."""
    return {f["acknowledgedAt"]: f["reason"] for f in _nag(synth.report)["suppressedViolations"]
            if f["acknowledgedId"] == f"AwsSolutions::{rule}"}


def test_acknowledgments_sit_on_exactly_the_constructs_they_explain(synth: Synth) -> None:
    stack, methods = STACK_NAME, f"{STACK_NAME}/Gateway/Api/Default"
    # X-Ray's Resource '*': the three function roles, nothing else (the scheduler role has no wildcard)
    assert set(_acknowledged_at(synth, "AwsSolutions-IAM5[Resource::*]")) == {
        f"{stack}/Gateway/FunctionRole", f"{stack}/Gateway/Stream/FunctionRole", f"{stack}/Admin/FunctionRole",
        f"{stack}/Reconciler/FunctionRole",
        f"{stack}/Chargeback/Exporter/FunctionRole", f"{stack}/Chargeback/Focus/FunctionRole"}
    # APIG4 (no authorization): the OpenAI-compatible methods only; the admin methods use IAM.
    open_methods = set(_acknowledged_at(synth, "AwsSolutions-APIG4"))
    assert len(open_methods) == 8
    assert all(path.startswith(f"{methods}/") and "/admin" not in path for path in open_methods)
    # COG4 (no Cognito): those plus every admin method, with the IAM reason on the admin ones.
    cognito = _acknowledged_at(synth, "AwsSolutions-COG4")
    admin = {path: reason for path, reason in cognito.items() if path.startswith(f"{methods}/admin/")}
    assert set(cognito) == open_methods | set(admin)
    assert len(admin) == len(ADMIN_ROUTES)
    assert all("AWS_IAM" in reason and "SigV4" in reason for reason in admin.values())


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


# --- tables -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("prefix", "model"), TABLES.items(), ids=list(TABLES))
def test_table_keys_are_the_pynamodb_models(synth: Synth, prefix: str, model: type[Model]) -> None:
    schema = model._get_schema()
    _, table = synth.one(TABLE, prefix)
    props = table["Properties"]

    assert props["KeySchema"] == schema["key_schema"]
    assert props["KeySchema"] == [{"AttributeName": model._hash_keyname, "KeyType": "HASH"}]
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(schema["attribute_definitions"], key=str)
    expected_gsis = [
        {"IndexName": i["index_name"], "KeySchema": i["key_schema"], "Projection": i["projection"]}
        for i in schema["global_secondary_indexes"]
    ]
    assert props.get("GlobalSecondaryIndexes", []) == expected_gsis
    assert "LocalSecondaryIndexes" not in props


def test_table_schemas_are_the_expected_ones(synth: Synth) -> None:
    """The derived schemas pinned: a model change that alters a table shows up here on purpose."""
    ledger = synth.one(TABLE, "LedgerTable")[1]["Properties"]
    assert ledger["GlobalSecondaryIndexes"] == [{
        "IndexName": "by_day",
        "KeySchema": [{"AttributeName": "day_shard", "KeyType": "HASH"},
                      {"AttributeName": "ts", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }]
    keys = synth.one(TABLE, "KeysTable")[1]["Properties"]
    assert keys["KeySchema"] == [{"AttributeName": "key_hash", "KeyType": "HASH"}]
    assert keys["GlobalSecondaryIndexes"] == [{
        "IndexName": "by_key_id",
        "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"},
    }]
    budgets = synth.one(TABLE, "BudgetsTable")[1]["Properties"]
    assert budgets["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert budgets["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert "GlobalSecondaryIndexes" not in budgets


def test_budgets_table_expires_items_on_the_models_ttl_attribute(synth: Synth) -> None:
    assert isinstance(BudgetItem.get_attributes()[TTL_ATTRIBUTE], NumberAttribute)
    budgets = synth.one(TABLE, "BudgetsTable")[1]["Properties"]
    assert budgets["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert TTL_ATTRIBUTE == "expires_at"
    for other in ("LedgerTable", "KeysTable"):
        assert "TimeToLiveSpecification" not in synth.one(TABLE, other)[1]["Properties"]


@pytest.mark.parametrize("prefix", list(TABLES))
def test_table_is_protected_and_encrypted_with_the_cmk(synth: Synth, prefix: str) -> None:
    key_id, key = synth.one("AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    _, table = synth.one(TABLE, prefix)
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": _getatt(key_id)}
    assert props["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_model_table_rejects_a_ttl_attribute_the_model_cannot_hold(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path)), "TtlCheck")
    key = kms.Key(stack, "Key")
    with pytest.raises(ValueError, match="number attribute 'pk'"):
        ModelTable(stack, "StringTtl", model=BudgetItem, encryption_key=key, time_to_live_attribute="pk")
    with pytest.raises(ValueError, match="'missing'"):
        ModelTable(stack, "MissingTtl", model=BudgetItem, encryption_key=key, time_to_live_attribute="missing")


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


# --- Lambda functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", FUNCTIONS)
def test_functions_share_runtime_layers_tracing_and_have_own_role_and_logs(synth: Synth, prefix: str) -> None:
    _, function = synth.one(FUNCTION, prefix)
    props = function["Properties"]
    assert props["Runtime"] == f"python{LAMBDA_PYTHON}"
    assert props["Architectures"] == [LAMBDA_ARCH]
    assert props["Handler"] == "handler.lambda_handler"
    assert props["TracingConfig"] == {"Mode": "Active"}
    layers = synth.resources("AWS::Lambda::LayerVersion")
    assert len(layers) == 3
    expected = [layer for layer in layers if "Chargeback" not in layer or prefix.startswith("Chargeback")]
    assert sorted(ref["Ref"] for ref in props["Layers"]) == sorted(expected)
    role_id = synth.id_of("AWS::IAM::Role", f"{prefix}Role")
    assert props["Role"] == _getatt(role_id)
    role = synth.template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]
    assert "ManagedPolicyArns" not in role  # no AWSLambdaBasicExecutionRole (logs:* everywhere)
    log_group_id = synth.id_of("AWS::Logs::LogGroup", f"{prefix}Logs")
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": log_group_id}
    log_group = synth.template["Resources"][log_group_id]
    assert log_group["Properties"]["RetentionInDays"] == 365
    assert log_group["DeletionPolicy"] == "Retain"


def test_layers_target_the_runtime_and_core_and_deps_exist(synth: Synth) -> None:
    layers = synth.resources("AWS::Lambda::LayerVersion")
    for layer in layers.values():
        assert layer["Properties"]["CompatibleRuntimes"] == [f"python{LAMBDA_PYTHON}"]
        assert layer["Properties"]["CompatibleArchitectures"] == [LAMBDA_ARCH]
    assert any("Core" in layer_id for layer_id in layers) and any("Deps" in layer_id for layer_id in layers)
    # no other functions (e.g. CDK custom-resource handlers) crept in
    assert sorted(synth.resources(FUNCTION)) == sorted(synth.id_of(FUNCTION, p) for p in FUNCTIONS)


def test_function_environments(synth: Synth) -> None:
    ref = {prefix: {"Ref": synth.id_of(TABLE, prefix)} for prefix in TABLES}
    topic = {"Ref": synth.id_of("AWS::SNS::Topic")}
    bus = {"Ref": synth.id_of("AWS::Events::EventBus")}
    expected = {
        "GatewayFunction": {
            "POWERTOOLS_SERVICE_NAME": "finops-gateway",
            "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
            "FINOPS_LEDGER_TABLE": ref["LedgerTable"],
            "FINOPS_KEYS_TABLE": ref["KeysTable"],
            "FINOPS_BUDGETS_TABLE": ref["BudgetsTable"],
            "FINOPS_ALERTS_TOPIC_ARN": topic,
            "FINOPS_ALERTS_EVENT_BUS": bus,
            "LOG_LEVEL": "INFO",
        },
        "AdminFunction": {
            "POWERTOOLS_SERVICE_NAME": "finops-admin",
            "FINOPS_KEYS_TABLE": ref["KeysTable"],
            "LOG_LEVEL": "INFO",
        },
        "ReconcilerFunction": {
            "POWERTOOLS_SERVICE_NAME": "finops-reconciler",
            "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",  # the handler emits metrics
            "FINOPS_LEDGER_TABLE": ref["LedgerTable"],
            "FINOPS_BUDGETS_TABLE": ref["BudgetsTable"],
            "LOG_LEVEL": "INFO",
        },
    }
    for prefix, env in expected.items():
        assert synth.one(FUNCTION, prefix)[1]["Properties"]["Environment"]["Variables"] == env, prefix
        # every FINOPS_ variable is a setting finops.settings actually reads
        for name in env:
            if name.startswith("FINOPS_"):
                assert name.removeprefix("FINOPS_").lower() in Settings.model_fields, name


def test_function_sizes_and_timeouts(synth: Synth) -> None:
    props = {p: synth.one(FUNCTION, p)[1]["Properties"] for p in FUNCTIONS}
    assert (props["GatewayFunction"]["MemorySize"], props["GatewayFunction"]["Timeout"]) == (1024, 60)
    assert props["AdminFunction"]["Timeout"] == 29  # the REST integration timeout
    assert props["ReconcilerFunction"]["Timeout"] < 5 * 60  # below the schedule period


# --- IAM ----------------------------------------------------------------------------------------------


def _xray_and_logs(synth: Synth, prefix: str) -> dict[tuple[str, str | None], set[str]]:
    return {
        _g(_getatt(synth.id_of("AWS::Logs::LogGroup", f"{prefix}Logs"))): {"logs:CreateLogStream",
                                                                           "logs:PutLogEvents"},
        _g("*"): {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
    }


DYNAMODB_KMS = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"}


def test_gateway_role_is_least_privilege(synth: Synth) -> None:
    ledger, keys, budgets = (synth.id_of(TABLE, p) for p in TABLES)
    key = _getatt(synth.id_of("AWS::KMS::Key"))
    grants = _grants(synth, "GatewayFunction")
    secrets = {_g({"Ref": sid}): {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
               for sid in synth.resources("AWS::SecretsManager::Secret")}
    bedrock = {resource: actions for resource, actions in grants.items() if ":bedrock:" in resource[0]}
    assert sorted(r[0].rsplit(":", 1)[-1] for r in bedrock) == ['foundation-model/*"]]}', 'inference-profile/*"]]}']
    assert all(actions == {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}
               for actions in bedrock.values())
    # The streaming function has exactly the gateway function's rights (besides its own log group).
    stream = _grants(synth, "GatewayStreamFunction")
    for name, granted in (("GatewayFunction", grants), ("GatewayStreamFunction", stream)):
        for resource in _xray_and_logs(synth, name):
            granted.pop(resource)
    assert stream == grants
    grants = {resource: actions for resource, actions in grants.items() if resource not in bedrock}
    assert grants == {
        # ledger rows: LedgerRepository (conditional PutItem, GetItem, Query by_day) and the settlement
        # transaction's Put (TransactWriteItems is authorized per item: PutItem)
        _g(_getatt(ledger)): {"dynamodb:PutItem", "dynamodb:GetItem"},
        _g(_index_arn(ledger, "by_day")): {"dynamodb:Query"},
        _g(_getatt(keys)): {"dynamodb:GetItem"},  # authenticate
        # admission/settlement updates (alone or in a transaction), state reads, alert markers; the router's
        # fleet scores (UpdateItem ADD, BatchGetItem)
        _g(_getatt(budgets)): {"dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:PutItem",
                               "dynamodb:BatchGetItem"},
        _g(key, "dynamodb"): DYNAMODB_KMS,
        _g({"Ref": synth.id_of("AWS::SNS::Topic")}): {"sns:Publish"},
        _g(key, "sns"): {"kms:GenerateDataKey", "kms:Decrypt"},
        _g(_getatt(synth.id_of("AWS::Events::EventBus"))): {"events:PutEvents"},
        **secrets,
    }
    actions = set().union(*grants.values())
    assert "dynamodb:ConditionCheckItem" not in actions
    assert not any(a.endswith("*") for a in actions), actions


def test_admin_role_manages_keys_only(synth: Synth) -> None:
    keys = synth.id_of(TABLE, "KeysTable")
    assert _grants(synth, "AdminFunction") == {
        **_xray_and_logs(synth, "AdminFunction"),
        _g(_getatt(keys)): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"},
        _g(_index_arn(keys, "by_key_id")): {"dynamodb:Query"},
        _g(_getatt(synth.id_of("AWS::KMS::Key")), "dynamodb"): DYNAMODB_KMS,
    }


def test_reconciler_role_scans_budgets_and_appends_to_the_ledger(synth: Synth) -> None:
    assert _grants(synth, "ReconcilerFunction") == {
        **_xray_and_logs(synth, "ReconcilerFunction"),
        _g(_getatt(synth.id_of(TABLE, "BudgetsTable"))): {"dynamodb:Scan", "dynamodb:UpdateItem",
                                                          "dynamodb:GetItem"},
        _g(_getatt(synth.id_of(TABLE, "LedgerTable"))): {"dynamodb:PutItem", "dynamodb:GetItem"},
        _g(_getatt(synth.id_of("AWS::KMS::Key")), "dynamodb"): DYNAMODB_KMS,
    }


def test_gateway_policy_allows_the_budget_calls(synth: Synth) -> None:
    """The same, in CDK's assertion style: the statements the budget engine depends on."""
    role_id = synth.id_of("AWS::IAM::Role", "GatewayFunctionRole")
    for action, resource in (
        (Match.array_with(["dynamodb:UpdateItem"]), _getatt(synth.id_of(TABLE, "BudgetsTable"))),
        (Match.array_with(["dynamodb:PutItem"]), _getatt(synth.id_of(TABLE, "LedgerTable"))),
        ("sns:Publish", {"Ref": synth.id_of("AWS::SNS::Topic")}),
        ("events:PutEvents", _getatt(synth.id_of("AWS::Events::EventBus"))),
    ):
        synth.assertions.has_resource_properties(POLICY, {
            "Roles": [{"Ref": role_id}],
            "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
                "Action": action,
                "Effect": "Allow",
                "Resource": resource,
            })])},
        })


# --- secrets ------------------------------------------------------------------------------------------


def test_provider_secrets_exist_encrypted_and_readable_by_the_gateway(synth: Synth) -> None:
    key_id, _ = synth.one("AWS::KMS::Key")
    secrets = synth.resources("AWS::SecretsManager::Secret")
    by_name = {s["Properties"]["Name"]: sid for sid, s in secrets.items()}
    # Bedrock has no secret: the gateway's IAM role calls it.
    assert set(by_name) == {"finops/providers/openai", "finops/providers/groq", "finops/providers/anthropic"}
    for secret_id in by_name.values():
        assert secrets[secret_id]["Properties"]["KmsKeyId"] == _getatt(key_id)
        synth.assertions.has_resource_properties(POLICY, {
            "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
                "Action": Match.array_with(["secretsmanager:GetSecretValue"]),
                "Effect": "Allow",
                "Resource": {"Ref": secret_id},
            })])},
        })
    # ... and may decrypt them, through Secrets Manager only; no other function may
    role_id = synth.id_of("AWS::IAM::Role", "GatewayFunctionRole")
    key_policy = synth.template["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    assert any(s["Principal"] == {"AWS": _getatt(role_id)} and "kms:Decrypt" in s["Action"]
               and "secretsmanager." in json.dumps(s["Condition"]) for s in key_policy)
    for other in ("AdminFunction", "ReconcilerFunction"):
        assert not any("secretsmanager" in resource or "Secret" in resource
                       for resource, _ in _grants(synth, other)), other


# --- budget alerts ------------------------------------------------------------------------------------


def test_alerts_topic_is_encrypted_and_ssl_only(synth: Synth) -> None:
    key_id = synth.id_of("AWS::KMS::Key")
    topic_id, topic = synth.one("AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == _getatt(key_id)
    _, policy = synth.one("AWS::SNS::TopicPolicy")
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    assert any(s["Effect"] == "Deny" and "sns:Publish" in _actions(s) and s["Principal"] == "*"
               and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy["Properties"]["PolicyDocument"]["Statement"])


def test_alerts_event_bus(synth: Synth) -> None:
    _, bus = synth.one("AWS::Events::EventBus")
    assert bus["Properties"]["Name"] == "finops-budgets"
    assert "Policy" not in bus["Properties"]  # no cross-account access (cdk-nag EVB1)


# --- reconciler schedule ------------------------------------------------------------------------------


def test_reconciler_runs_every_five_minutes_on_eventbridge_scheduler(synth: Synth) -> None:
    function_id = synth.id_of(FUNCTION, "ReconcilerFunction")
    _, schedule = synth.one("AWS::Scheduler::Schedule", "ReconcilerSchedule")
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == "rate(5 minutes)"
    assert props["State"] == "ENABLED"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = props["Target"]
    assert target["Arn"] == _getatt(function_id)
    # the scheduler's role may invoke exactly that function (unqualified: no "<arn>:*"), nothing else
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    trust = synth.template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
    assert "aws:SourceAccount" in trust[0]["Condition"]["StringEquals"]
    policies = [p for p in synth.resources(POLICY).values() if {"Ref": role_id} in p["Properties"]["Roles"]]
    assert [p["Properties"]["PolicyDocument"]["Statement"] for p in policies] == [[
        {"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": _getatt(function_id)}]]


def test_the_gateways_spilled_ledger_rows_are_delivered_to_the_reconciler(synth: Synth) -> None:
    function_id = synth.id_of(FUNCTION, "ReconcilerFunction")
    gateway_logs = {synth.id_of("AWS::Logs::LogGroup", f"{prefix}Logs")
                    for prefix in ("GatewayFunction", "GatewayStreamFunction")}
    filters = synth.resources("AWS::Logs::SubscriptionFilter").values()
    # One filter per gateway function's log group, nothing else subscribed, each to the reconciler.
    assert {f["Properties"]["LogGroupName"]["Ref"] for f in filters} == gateway_logs and len(filters) == 2
    for f in filters:
        assert f["Properties"]["DestinationArn"] == _getatt(function_id)
        assert f["Properties"]["FilterPattern"] == '{ $.message = "ledger_spill" }'
    # CloudWatch Logs may invoke the reconciler, for those log groups only.
    permissions = [p["Properties"] for p in synth.resources("AWS::Lambda::Permission").values()
                   if p["Properties"]["Principal"] == "logs.amazonaws.com"]
    assert len(permissions) == 2
    assert all(p["FunctionName"] == _getatt(function_id) and p["Action"] == "lambda:InvokeFunction"
               for p in permissions)
    assert {p["SourceArn"]["Fn::GetAtt"][0] for p in permissions} == gateway_logs
    # CloudWatch Logs invokes asynchronously: a failed restore is retried (restoring is idempotent)
    [invoke_config] = [c["Properties"] for c in synth.resources("AWS::Lambda::EventInvokeConfig").values()
                       if c["Properties"]["FunctionName"] == {"Ref": function_id}]
    assert invoke_config["MaximumRetryAttempts"] == 2


# --- REST API -----------------------------------------------------------------------------------------


def _handler_routes(handler: Path) -> set[tuple[str, str]]:
    """(API Gateway path, method) of every ``@app.<method>("<path>")`` route in a Powertools handler."""
    routes = re.findall(r'@app\.(get|post|put|patch|delete)\("([^"]+)"\)', handler.read_text())
    return {(re.sub(r"<(\w+)>", r"{\1}", path), method.upper()) for method, path in routes}


ADMIN_ROUTES = _handler_routes(ADMIN_FUNCTION_DIR / "handler.py")


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


def _methods(synth: Synth) -> dict[tuple[str, str], dict[str, Any]]:
    paths = _paths(synth)
    methods = {}
    for method in synth.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        ref = props["ResourceId"]
        methods[(paths[ref["Ref"]] if "Ref" in ref else "/", props["HttpMethod"])] = props
    return methods


def test_admin_routes_are_iam_authorized_and_reach_the_admin_function(synth: Synth) -> None:
    assert len(ADMIN_ROUTES) == 5, ADMIN_ROUTES  # the handler parsed as expected
    admin_function = synth.id_of(FUNCTION, "AdminFunction")
    admin = {route: props for route, props in _methods(synth).items() if route[0].startswith("/admin")}
    assert set(admin) == ADMIN_ROUTES
    for route, props in admin.items():
        assert props["AuthorizationType"] == "AWS_IAM", route
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert admin_function in json.dumps(props["Integration"]["Uri"])
    # the admin function may be invoked by API Gateway for the admin routes only
    for permission in synth.resources("AWS::Lambda::Permission").values():
        if permission["Properties"]["FunctionName"] == _getatt(admin_function):
            assert "/admin/keys" in json.dumps(permission["Properties"]["SourceArn"])


def test_openai_routes_are_open_and_reach_the_gateway_function(synth: Synth) -> None:
    gateway_function = synth.id_of(FUNCTION, "GatewayFunction")
    stream_function = synth.id_of(FUNCTION, "GatewayStreamFunction")
    routes = {route: props for route, props in _methods(synth).items() if not route[0].startswith("/admin")}
    for route, props in routes.items():
        assert props["AuthorizationType"] == "NONE", route  # virtual keys are checked in the Lambda
        assert props["Integration"]["Type"] == "AWS_PROXY"
        function = stream_function if route == ("/v1/chat/completions", "POST") else gateway_function
        assert function in json.dumps(props["Integration"]["Uri"]), route
    expected = {("/v1/chat/completions", "POST"), ("/v1/models", "GET"), ("/{proxy+}", "ANY"), ("/", "ANY")}
    assert expected <= set(routes)


def test_every_buffered_integration_states_the_29_second_timeout(synth: Synth) -> None:
    for route, props in _methods(synth).items():
        streamed = route == ("/v1/chat/completions", "POST")  # 15 minutes: see the streaming test
        assert props["Integration"]["TimeoutInMillis"] == (900_000 if streamed else 29_000), route


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
    assert {"ApiUrl", "OpenAIBaseUrl", "AdminKeysUrl", "LedgerTableName", "KeysTableName", "BudgetsTableName",
            "AlertsTopicArn", "AlertsEventBusName", "OpenaiSecretArn", "GroqSecretArn"} <= set(outputs)
    for name, prefix in (("LedgerTableName", "LedgerTable"), ("KeysTableName", "KeysTable"),
                         ("BudgetsTableName", "BudgetsTable")):
        assert outputs[name]["Value"] == {"Ref": synth.id_of(TABLE, prefix)}
    assert outputs["AlertsTopicArn"]["Value"] == {"Ref": synth.id_of("AWS::SNS::Topic")}
    assert outputs["AlertsEventBusName"]["Value"] == {"Ref": synth.id_of("AWS::Events::EventBus")}
    assert "execute-api" in json.dumps(outputs["ApiUrl"]["Value"])
    assert "/admin/keys" in json.dumps(outputs["AdminKeysUrl"]["Value"])


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


# --- streaming -----------------------------------------------------------------------------------------


def test_chat_completions_stream_through_the_runtime_loop_function(synth: Synth) -> None:
    methods = synth.resources("AWS::ApiGateway::Method")
    functions = synth.resources("AWS::Lambda::Function")
    [stream_id] = [fid for fid, f in functions.items()
                   if (f["Properties"].get("Environment") or {}).get("Variables", {}).get("AWS_LAMBDA_EXEC_WRAPPER")]
    stream_fn = functions[stream_id]["Properties"]
    assert stream_fn["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"] == "/var/task/bootstrap"
    assert stream_fn["Timeout"] == 900
    posts = [m["Properties"] for m in methods.values() if m["Properties"]["HttpMethod"] == "POST"
             and "response-streaming-invocations" in json.dumps(m["Properties"]["Integration"].get("Uri"))]
    assert len(posts) == 1
    integration = posts[0]["Integration"]
    assert integration["ResponseTransferMode"] == "STREAM"
    assert integration["TimeoutInMillis"] == 900_000
    assert stream_id in json.dumps(integration["Uri"])
    # Every other method stays on the buffered function.
    others = [m for m in methods.values() if m["Properties"] not in posts
              and m["Properties"].get("Integration", {}).get("Type") == "AWS_PROXY"]
    assert others and all(stream_id not in json.dumps(m["Properties"]["Integration"]["Uri"]) for m in others
                          if "admin" not in json.dumps(m["Properties"]["Integration"]["Uri"]).lower())
    bootstrap = GATEWAY_STREAM_FUNCTION_DIR / "bootstrap"
    assert os.access(bootstrap, os.X_OK) and "finops.streaming_runtime" in bootstrap.read_text()


def test_both_gateway_functions_may_call_bedrock(synth: Synth) -> None:
    policies = [p for p in synth.resources("AWS::IAM::Policy").values()
                if "bedrock:InvokeModelWithResponseStream" in json.dumps(p)]
    assert len(policies) == 2


def test_routed_tiers_alarm_when_their_strong_share_runs_over_target(synth: Synth) -> None:
    from finops.routing.policy import load_routing_policy

    from infra.constructs.routing_alarms import MARGIN, MIN_CALLS

    policy = load_routing_policy()
    topic_id, _ = synth.one("AWS::SNS::Topic")
    alarms = {k: v["Properties"] for k, v in synth.resources("AWS::CloudWatch::Alarm").items()
              if k.startswith("RoutingAlarms")}
    routed = {name: tier for name, tier in policy.tiers.items() if len(tier.classes) > 1 and tier.strong}
    assert routed and len(alarms) == len(routed)  # free reaches one model: nothing to watch
    for name, tier in routed.items():
        alarm = next(a for a in alarms.values() if a["AlarmDescription"].startswith(f"Tier {name}:"))
        assert alarm["Threshold"] == 100 * tier.strong_share + MARGIN
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        queries = {q["Id"]: q for q in alarm["Metrics"]}
        expression = next(q["Expression"] for q in queries.values() if "Expression" in q)
        assert expression.startswith("IF((") and f">= {MIN_CALLS}, 100 * FILL(strong, 0) /" in expression
        for cls in tier.classes:
            stat = queries[cls]["MetricStat"]
            assert stat["Metric"]["Namespace"] == "FinOpsGateway" and stat["Metric"]["MetricName"] == "RoutedCalls"
            assert {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]} == {"Tier": name, "ModelClass": cls}
            assert (stat["Period"], stat["Stat"]) == (3600, "Sum")
    # CloudWatch may notify the encrypted topic: its policy lets it publish and the key policy lets it use the key
    _, topic_policy = synth.one("AWS::SNS::TopicPolicy")
    statements = topic_policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
               and set(_actions(s)) == {"sns:Publish"} for s in statements)
    _, key = synth.one("AWS::KMS::Key")
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
               and set(_actions(s)) == {"kms:Decrypt", "kms:GenerateDataKey*"}
               for s in key["Properties"]["KeyPolicy"]["Statement"])
