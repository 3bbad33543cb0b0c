"""The chargeback construct as synthesized in the gateway stack: Glue projection, the Athena workgroup, the named
queries (the repository's .sql files), the schedules, the bucket, least-privilege roles, and cdk-nag.

Resources are told apart by logical id prefix (``Chargeback/Bucket`` -> ``ChargebackBucket...``). The app is
synthesized once for the module, with a stub dependency layer unless ``make layers`` has built the real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from finops.chargeback import schema
from finops.chargeback.service import ATHENA_WORKGROUP, GLUE_DATABASE, ChargebackSettings
from finops.chargeback.sql import SQL_DIR
from finops.settings import Settings

from infra.app import STACK_NAME, build_app
from infra.constructs.chargeback import BYTES_SCANNED_CUTOFF
from infra.constructs.layers import DepsLayerNotBuilt, check_deps_build
from infra.runtime import DEPS_LAYER_DIR, LAMBDA_ARCH, LAMBDA_PYTHON, STAMP_NAME, layer_stamp, project_dependencies

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

FUNCTIONS = {"ChargebackExporterFunction": "exporter", "ChargebackFocusFunction": "focus_export"}


class Template:
    def __init__(self, template: dict[str, Any], report: dict[str, Any], error: Exception | None) -> None:
        self.template, self.report, self.error = template, report, error
        self.resources_ = template["Resources"]

    def resources(self, cfn_type: str, prefix: str = "") -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources_.items() if v["Type"] == cfn_type and k.startswith(prefix)}

    def one(self, cfn_type: str, prefix: str = "") -> tuple[str, dict[str, Any]]:
        found = self.resources(cfn_type, prefix)
        assert len(found) == 1, f"expected one {cfn_type} {prefix}*, found {sorted(found)}"
        return next(iter(found.items()))

    def id_of(self, cfn_type: str, prefix: str = "") -> str:
        return self.one(cfn_type, prefix)[0]

    def props(self, cfn_type: str, prefix: str = "") -> dict[str, Any]:
        return self.one(cfn_type, prefix)[1]["Properties"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Template:
    try:
        check_deps_build(DEPS_LAYER_DIR)
        deps = DEPS_LAYER_DIR
    except DepsLayerNotBuilt:
        deps = tmp_path_factory.mktemp("deps-layer")
        (deps / "python").mkdir()
        (deps / "chargeback" / "python").mkdir(parents=True)
        (deps / STAMP_NAME).write_text(json.dumps(layer_stamp(project_dependencies())))
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(outdir, deps_layer_dir=deps)
    try:
        app.synth()
        error = None
    except RuntimeError as exc:
        error = exc
    report_file = outdir / "validation-report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    return Template(json.loads((outdir / f"{STACK_NAME}.template.json").read_text()), report, error)


def getatt(logical_id: str, attribute: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, attribute]}


def s3_uri(bucket_id: str, suffix: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, suffix]]}


# --- Glue -----------------------------------------------------------------------------------------------------


def test_glue_database(synth: Template) -> None:
    props = synth.props("AWS::Glue::Database", "Chargeback")
    assert props["DatabaseInput"]["Name"] == GLUE_DATABASE
    assert not synth.resources("AWS::Glue::Crawler")  # partition projection, no crawler


def test_usage_table_projects_dt_partitions_over_the_bucket(synth: Template) -> None:
    bucket = synth.id_of("AWS::S3::Bucket", "ChargebackBucket")
    table = synth.props("AWS::Glue::Table", "ChargebackUsageTable")["TableInput"]
    assert table["Name"] == "usage" and table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string", "Comment": schema.USAGE_PARTITION.comment}]
    params = table["Parameters"]
    assert {k: v for k, v in params.items() if k.startswith("projection.")} == {
        "projection.enabled": "true",
        "projection.dt.type": "date",
        "projection.dt.format": "yyyy-MM-dd",
        "projection.dt.range": "2025-01-01,NOW",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
    }
    assert params["storage.location.template"] == s3_uri(bucket, "/usage/dt=${dt}/")
    assert params["classification"] == "parquet"
    storage = table["StorageDescriptor"]
    assert storage["Location"] == s3_uri(bucket, "/usage/")
    assert [(c["Name"], c["Type"]) for c in storage["Columns"]] == [(c.name, c.type) for c in schema.USAGE_COLUMNS]
    assert {c["Type"] for c in storage["Columns"] if c["Name"].endswith("_usd")} == {"decimal(38,10)"}
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert storage["InputFormat"].endswith("MapredParquetInputFormat")


def test_focus_table_projects_billing_periods(synth: Template) -> None:
    bucket = synth.id_of("AWS::S3::Bucket", "ChargebackBucket")
    table = synth.props("AWS::Glue::Table", "ChargebackFocusTable")["TableInput"]
    assert table["Name"] == "focus"
    params = table["Parameters"]
    assert params["projection.billing_period.type"] == "date"
    assert params["projection.billing_period.format"] == "yyyy-MM"
    assert params["projection.billing_period.interval.unit"] == "MONTHS"
    assert params["storage.location.template"] == s3_uri(bucket, "/focus/billing_period=${billing_period}/")
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == [c.name for c in schema.FOCUS_COLUMNS]


# --- Athena ---------------------------------------------------------------------------------------------------


def test_workgroup_enforces_an_encrypted_result_location_and_a_scan_cutoff(synth: Template) -> None:
    bucket = synth.id_of("AWS::S3::Bucket", "ChargebackBucket")
    key = synth.id_of("AWS::KMS::Key")
    props = synth.props("AWS::Athena::WorkGroup", "Chargeback")
    assert props["Name"] == ATHENA_WORKGROUP and props["State"] == "ENABLED"
    config = props["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == BYTES_SCANNED_CUTOFF == 10 * 1024**3
    assert config["PublishCloudWatchMetricsEnabled"] is True
    assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
    assert config["ResultConfiguration"] == {
        "OutputLocation": s3_uri(bucket, "/athena-results/"),
        "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": getatt(key)},
    }


def test_named_queries_are_the_sql_files(synth: Template) -> None:
    workgroup = synth.id_of("AWS::Athena::WorkGroup", "Chargeback")
    named = {q["Properties"]["Name"]: (qid, q) for qid, q in synth.resources("AWS::Athena::NamedQuery").items()}
    files = {p.stem: p.read_text() for p in SQL_DIR.glob("*.sql")}
    assert set(named) == set(files) and "monthly_bill_by_dept" in named
    for name, (_, query) in named.items():
        props = query["Properties"]
        assert props["QueryString"] == files[name]  # byte for byte: the text the tests run on DuckDB
        assert props["Database"] == GLUE_DATABASE
        assert props["WorkGroup"] == ATHENA_WORKGROUP  # by name, created first (DependsOn below)
        assert props["Description"] and files[name].startswith(f"-- {name}: ")
        assert workgroup in query["DependsOn"]


# --- schedules ------------------------------------------------------------------------------------------------


def _schedule(synth: Template, prefix: str) -> dict[str, Any]:
    return synth.props("AWS::Scheduler::Schedule", prefix)


def test_daily_export_runs_after_midnight_utc_for_the_previous_day(synth: Template) -> None:
    props = _schedule(synth, "ChargebackDailyExportSchedule")
    assert props["ScheduleExpression"] == "cron(45 0 * * ? *)"
    assert props["ScheduleExpressionTimezone"] in ("UTC", "Etc/UTC")
    assert props["State"] == "ENABLED" and props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = props["Target"]
    assert target["Arn"] == getatt(synth.id_of("AWS::Lambda::Function", "ChargebackExporterFunction"))
    assert json.loads(target["Input"]) == {"scheduled_time": "<aws.scheduler.scheduled-time>"}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1


def test_monthly_focus_export_runs_on_the_first(synth: Template) -> None:
    props = _schedule(synth, "ChargebackMonthlyFocusSchedule")
    assert props["ScheduleExpression"] == "cron(0 3 1 * ? *)"
    assert props["ScheduleExpressionTimezone"] in ("UTC", "Etc/UTC")
    target = props["Target"]
    assert target["Arn"] == getatt(synth.id_of("AWS::Lambda::Function", "ChargebackFocusFunction"))
    assert json.loads(target["Input"]) == {"scheduled_time": "<aws.scheduler.scheduled-time>"}


def test_the_scheduler_role_invokes_exactly_the_two_functions(synth: Template) -> None:
    role_id = synth.id_of("AWS::IAM::Role", "ChargebackSchedulerRole")
    trust = synth.resources_[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
    assert {"aws:SourceAccount", "aws:SourceArn"} <= set(trust[0]["Condition"]["StringEquals"])
    [policy] = [p for p in synth.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted((s["Action"], json.dumps(s["Resource"])) for s in statements) == sorted(
        ("lambda:InvokeFunction", json.dumps(getatt(synth.id_of("AWS::Lambda::Function", p)))) for p in FUNCTIONS)


# --- bucket ---------------------------------------------------------------------------------------------------


def test_bucket_is_encrypted_versioned_private_logged_and_has_a_lifecycle(synth: Template) -> None:
    bucket_id, bucket = synth.one("AWS::S3::Bucket", "ChargebackBucket")
    logs_id = synth.id_of("AWS::S3::Bucket", "ChargebackAccessLogs")
    props = bucket["Properties"]
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                     "KMSMasterKeyID": getatt(synth.id_of("AWS::KMS::Key"))}
    assert rule["BucketKeyEnabled"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-athena-results"]["Prefix"] == "athena-results/"
    assert rules["expire-athena-results"]["ExpirationInDays"] == 30
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules["expire-replaced-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert "ExpirationInDays" not in rules["usage-intelligent-tiering"]  # the billing record is never expired
    assert bucket["DeletionPolicy"] == "Retain"
    for bid in (bucket_id, logs_id):
        [policy] = [p["Properties"] for p in synth.resources("AWS::S3::BucketPolicy").values()
                    if p["Properties"]["Bucket"] == {"Ref": bid}]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in policy["PolicyDocument"]["Statement"]), bid
    logs = synth.resources_[logs_id]["Properties"]
    assert logs["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"}  # server access logs cannot be delivered to SSE-KMS


# --- functions and their roles --------------------------------------------------------------------------------


def _grants(synth: Template, prefix: str) -> dict[tuple[str, str | None], set[str]]:
    role_id = synth.id_of("AWS::IAM::Role", f"{prefix}Role")
    [policy] = [p for p in synth.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]]
    grants: dict[tuple[str, str | None], set[str]] = {}
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        condition = statement.get("Condition", {})
        via = condition.get("StringEquals", {}).get("kms:ViaService")
        tag = (via["Fn::Join"][1][0].rstrip(".") if via
               else json.dumps(condition.get("StringLike")) if condition else None)
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            grants.setdefault((json.dumps(resource, sort_keys=True), tag), set()).update(actions)
    return grants


def _g(resource: Any, tag: str | None = None) -> tuple[str, str | None]:
    return json.dumps(resource, sort_keys=True), tag


def _objects(bucket: str, prefix: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [getatt(bucket), f"/{prefix}/*"]]}


def test_exporter_reads_the_ledger_by_day_and_writes_usage_objects_only(synth: Template) -> None:
    bucket = synth.id_of("AWS::S3::Bucket", "ChargebackBucket")
    key = getatt(synth.id_of("AWS::KMS::Key"))
    ledger = synth.id_of("AWS::DynamoDB::Table", "LedgerTable")
    prefix = "ChargebackExporterFunction"
    assert _grants(synth, prefix) == {
        _g(getatt(synth.id_of("AWS::Logs::LogGroup", f"{prefix}Logs"))): {"logs:CreateLogStream", "logs:PutLogEvents"},
        _g("*"): {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
        _g({"Fn::Join": ["", [getatt(ledger), "/index/by_day"]]}): {"dynamodb:Query"},  # no Scan, no table read
        _g(key, "dynamodb"): {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"},
        _g(_objects(bucket, "usage")): {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
        _g(getatt(bucket), json.dumps({"s3:prefix": ["usage/*"]})): {"s3:ListBucket"},
        _g(key, "s3"): {"kms:Decrypt", "kms:GenerateDataKey"},
    }


def test_focus_reads_usage_and_writes_focus_objects_only(synth: Template) -> None:
    bucket = synth.id_of("AWS::S3::Bucket", "ChargebackBucket")
    key = getatt(synth.id_of("AWS::KMS::Key"))
    prefix = "ChargebackFocusFunction"
    assert _grants(synth, prefix) == {
        _g(getatt(synth.id_of("AWS::Logs::LogGroup", f"{prefix}Logs"))): {"logs:CreateLogStream", "logs:PutLogEvents"},
        _g("*"): {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
        _g(_objects(bucket, "usage")): {"s3:GetObject"},
        _g(_objects(bucket, "focus")): {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
        _g(getatt(bucket), json.dumps({"s3:prefix": ["focus/*", "usage/*"]})): {"s3:ListBucket"},
        _g(key, "s3"): {"kms:Decrypt", "kms:GenerateDataKey"},
    }


@pytest.mark.parametrize("prefix", FUNCTIONS)
def test_functions_use_the_shared_shape_and_read_only_settings_that_exist(synth: Template, prefix: str) -> None:
    function_id, function = synth.one("AWS::Lambda::Function", prefix)
    props = function["Properties"]
    assert props["Runtime"] == f"python{LAMBDA_PYTHON}" and props["Architectures"] == [LAMBDA_ARCH]
    assert props["Handler"] == "handler.lambda_handler" and props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] == 900 and props["MemorySize"] >= 2048
    assert props["EphemeralStorage"]["Size"] >= 4096
    assert len(props["Layers"]) == 3  # core, deps and the chargeback functions' own (DuckDB, sqlglot)
    env = props["Environment"]["Variables"]
    assert env["FINOPS_CHARGEBACK_BUCKET"] == {"Ref": synth.id_of("AWS::S3::Bucket", "ChargebackBucket")}
    assert env["FINOPS_WORK_DIR"] == "/tmp"
    known = set(Settings.model_fields) | set(ChargebackSettings.model_fields)
    for name in env:
        if name.startswith("FINOPS_"):
            assert name.removeprefix("FINOPS_").lower() in known, name
    if prefix == "ChargebackExporterFunction":
        assert env["FINOPS_LEDGER_TABLE"] == {"Ref": synth.id_of("AWS::DynamoDB::Table", "LedgerTable")}
    [invoke_config] = [c["Properties"] for c in synth.resources("AWS::Lambda::EventInvokeConfig").values()
                       if c["Properties"]["FunctionName"] == {"Ref": function_id}]
    assert invoke_config["MaximumRetryAttempts"] == 2  # idempotent exports: retrying is safe
    assert (Path(__file__).resolve().parents[2] / "functions" / FUNCTIONS[prefix] / "handler.py").is_file()


# --- cdk-nag --------------------------------------------------------------------------------------------------


def _nag(synth: Template) -> dict[str, Any]:
    [plugin] = [p for p in synth.report.get("pluginReports", []) if p["pluginName"] == "AwsSolutions"]
    return plugin


def test_cdk_nag_passes_with_only_the_reviewed_chargeback_acknowledgments(synth: Template) -> None:
    nag = _nag(synth)
    assert nag["violations"] == [] and nag["conclusion"] == "success" and synth.error is None
    bucket = synth.id_of("AWS::S3::Bucket", "ChargebackBucket")
    ours = sorted(
        (f["acknowledgedId"].removeprefix("AwsSolutions::"), f["acknowledgedAt"].removeprefix(f"{STACK_NAME}/"))
        for f in nag["suppressedViolations"] if f["acknowledgedAt"].startswith(f"{STACK_NAME}/Chargeback"))
    assert ours == sorted([
        ("AwsSolutions-IAM5[Resource::*]", "Chargeback/Exporter/FunctionRole"),  # X-Ray
        ("AwsSolutions-IAM5[Resource::*]", "Chargeback/Focus/FunctionRole"),
        (f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/usage/*]", "Chargeback/Exporter/FunctionRole"),
        (f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/usage/*]", "Chargeback/Focus/FunctionRole"),
        (f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/focus/*]", "Chargeback/Focus/FunctionRole"),
    ])
    for finding in nag["suppressedViolations"]:
        if finding["acknowledgedAt"].startswith(f"{STACK_NAME}/Chargeback"):
            assert len(finding["reason"]) >= 60, finding
