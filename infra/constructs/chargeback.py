"""Chargeback: the ledger as Parquet on S3, a Glue/Athena billing model and the scheduled exports.

- ``Bucket``: SSE-KMS with the stack's key (S3 Bucket Keys), TLS only, versioned, public access blocked,
  server access logs to ``AccessLogs``, lifecycle (Athena results and old versions expire, aborted uploads
  are cleaned, usage moves to Intelligent-Tiering). RETAIN: it is the billing record.
- Glue database + ``usage`` (``usage/dt=YYYY-MM-DD/``) and ``focus`` (``focus/billing_period=YYYY-MM/``) tables,
  both with partition projection: no crawler, no MSCK REPAIR, a new day is queryable the moment it lands.
- Athena workgroup: engine v3, enforced result location ``athena-results/`` encrypted with the key, a
  per-query bytes-scanned cutoff, CloudWatch metrics.
- One ``CfnNamedQuery`` per ``finops/chargeback/sql/*.sql`` file (the text the tests run on DuckDB).
- ``Exporter`` function, daily at 00:45 UTC for the previous day; ``Focus`` function, monthly on the 1st
  at 03:00 UTC for the previous month (EventBridge Scheduler, UTC, the scheduled time passed in the event).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Acknowledgment, CfnOutput, Duration, RemovalPolicy, Size, Stack, TimeZone, Validations
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct
from finops.chargeback import schema
from finops.chargeback.service import ATHENA_WORKGROUP, FOCUS_TABLE, GLUE_DATABASE, USAGE_TABLE
from finops.chargeback.sql import queries

from infra.constructs.function import finops_function
from infra.constructs.ledger_table import LedgerTable
from infra.constructs.model_table import DYNAMODB_KMS_ACTIONS
from infra.constructs.reconciler import _InvokeUnqualified
from infra.runtime import ROOT

EXPORTER_FUNCTION_DIR = ROOT / "functions" / "exporter"
FOCUS_FUNCTION_DIR = ROOT / "functions" / "focus_export"
ATHENA_RESULTS_PREFIX = "athena-results/"
BYTES_SCANNED_CUTOFF = 10 * 1024**3  # 10 GiB per query: a month of 10M calls/day is ~30 GB of Parquet
PROJECTION_START_DAY = "2025-01-01"
PROJECTION_START_MONTH = "2025-01"
# Reservations expire after 15 minutes and the reconciler runs every 5: rows of day D keep arriving until
# about 00:20 on D+1, so the daily export waits until 00:45 UTC. The FOCUS export runs after the last
# daily export of the month.
DAILY_EXPORT = {"minute": "45", "hour": "0"}
MONTHLY_FOCUS = {"minute": "0", "hour": "3", "day": "1"}
S3_KMS_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]

PARQUET_FORMAT = {
    "input_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "output_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "serde_info": glue.CfnTable.SerdeInfoProperty(
        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"),
}
OBJECT_WILDCARD_REASON = (
    "Object keys under this prefix are generated per day or month and per part file "
    "(usage/dt=YYYY-MM-DD/part-NNNNN.parquet, focus/billing_period=YYYY-MM/...): the grant is the prefix, "
    "never the whole bucket."
)


class Chargeback(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layers: Sequence[lambda_.ILayerVersion],
        ledger: LedgerTable,
        encryption_key: kms.IKey,
        exporter_code_dir: Path = EXPORTER_FUNCTION_DIR,
        focus_code_dir: Path = FOCUS_FUNCTION_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        # Server access logs are delivered under a bucket policy (no ACLs: the buckets enforce bucket-owner
        # object ownership). The flag is set here, before any child exists, so it holds for this construct
        # whatever the app's context says.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        stack = Stack.of(self)
        self.encryption_key = encryption_key

        # --- storage -----------------------------------------------------------------------------------
        # The log bucket itself logs nowhere (cdk-nag exempts server-access-log targets from S1).
        self.access_logs = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging cannot deliver to SSE-KMS
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(365),
                                              noncurrent_version_expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self, "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=encryption_key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="chargeback-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-incomplete-uploads",
                                 abort_incomplete_multipart_upload_after=Duration.days(1)),
                s3.LifecycleRule(id="expire-athena-results", prefix=ATHENA_RESULTS_PREFIX,
                                 expiration=Duration.days(30)),
                # a re-exported day leaves the replaced files as noncurrent versions for a while
                s3.LifecycleRule(id="expire-replaced-versions", noncurrent_version_expiration=Duration.days(30)),
                s3.LifecycleRule(id="usage-intelligent-tiering", prefix=f"{schema.USAGE_PREFIX}/", transitions=[
                    s3.Transition(storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                                  transition_after=Duration.days(30))]),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        bucket_name = self.bucket.bucket_name

        # --- Glue + Athena -----------------------------------------------------------------------------
        self.database = glue.CfnDatabase(
            self, "Database", catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=GLUE_DATABASE, description="AI FinOps gateway chargeback: the exported usage ledger, FOCUS"))
        self.usage_table = self._table(
            "UsageTable", USAGE_TABLE, f"s3://{bucket_name}/{schema.USAGE_PREFIX}/", schema.USAGE_COLUMNS,
            schema.USAGE_PARTITION, "One row per gateway call, exported daily from the ledger (UTC days)",
            {
                "projection.enabled": "true",
                f"projection.{schema.PARTITION_KEY}.type": "date",
                f"projection.{schema.PARTITION_KEY}.format": "yyyy-MM-dd",
                f"projection.{schema.PARTITION_KEY}.range": f"{PROJECTION_START_DAY},NOW",
                f"projection.{schema.PARTITION_KEY}.interval": "1",
                f"projection.{schema.PARTITION_KEY}.interval.unit": "DAYS",
                "storage.location.template":
                    f"s3://{bucket_name}/{schema.USAGE_PREFIX}/{schema.PARTITION_KEY}=${{{schema.PARTITION_KEY}}}/",
            })
        self.focus_table = self._table(
            "FocusTable", FOCUS_TABLE, f"s3://{bucket_name}/{schema.FOCUS_PREFIX}/", schema.FOCUS_COLUMNS,
            schema.FOCUS_PARTITION, "FOCUS 1.2 cost and usage, one export per billing month",
            {
                "projection.enabled": "true",
                f"projection.{schema.FOCUS_PARTITION_KEY}.type": "date",
                f"projection.{schema.FOCUS_PARTITION_KEY}.format": "yyyy-MM",
                f"projection.{schema.FOCUS_PARTITION_KEY}.range": f"{PROJECTION_START_MONTH},NOW",
                f"projection.{schema.FOCUS_PARTITION_KEY}.interval": "1",
                f"projection.{schema.FOCUS_PARTITION_KEY}.interval.unit": "MONTHS",
                "storage.location.template": (f"s3://{bucket_name}/{schema.FOCUS_PREFIX}/"
                                              f"{schema.FOCUS_PARTITION_KEY}=${{{schema.FOCUS_PARTITION_KEY}}}/"),
            })
        self.workgroup = athena.CfnWorkGroup(
            self, "WorkGroup",
            name=ATHENA_WORKGROUP,
            description="AI FinOps chargeback queries: enforced encrypted results, per-query scan cutoff",
            recursive_delete_option=False,
            state="ENABLED",
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                publish_cloud_watch_metrics_enabled=True,
                requester_pays_enabled=False,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{bucket_name}/{ATHENA_RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=encryption_key.key_arn),
                ),
            ),
        )
        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for name, query in queries().items():
            named = athena.CfnNamedQuery(
                self, f"Query{''.join(p.capitalize() for p in name.split('_'))}",
                name=name, description=query.description[:1024], database=GLUE_DATABASE,
                query_string=query.sql, work_group=self.workgroup.name)
            named.node.add_dependency(self.workgroup, self.database)
            self.named_queries[name] = named

        # --- functions ---------------------------------------------------------------------------------
        exporter = finops_function(
            Construct(self, "Exporter"),
            code_dir=exporter_code_dir,
            description="FinOps chargeback: export one UTC day of the ledger to S3 as Parquet (usage/dt=...)",
            role_description="FinOps exporter: its log group, X-Ray, query the ledger by day, write usage/ objects",
            layers=layers,
            memory_size=2048,
            timeout=Duration.minutes(15),
            ephemeral_storage_size=Size.gibibytes(4),
            retry_attempts=2,  # idempotent: a retry replaces the day's files
            environment={
                "POWERTOOLS_SERVICE_NAME": "finops-exporter",
                "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
                "FINOPS_LEDGER_TABLE": ledger.table_name,
                "FINOPS_CHARGEBACK_BUCKET": bucket_name,
                "FINOPS_WORK_DIR": "/tmp",  # noqa: S108  (Lambda's only writable directory)
                "LOG_LEVEL": "INFO",
            },
        )
        self.exporter, self.exporter_role = exporter.function, exporter.role
        focus = finops_function(
            Construct(self, "Focus"),
            code_dir=focus_code_dir,
            description="FinOps chargeback: FOCUS 1.2 export of one billing month (focus/billing_period=...)",
            role_description="FinOps FOCUS export: its log group, X-Ray, read usage/ objects, write focus/ objects",
            layers=layers,
            memory_size=3008,
            timeout=Duration.minutes(15),
            ephemeral_storage_size=Size.gibibytes(10),
            retry_attempts=2,
            environment={
                "POWERTOOLS_SERVICE_NAME": "finops-focus-export",
                "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
                "FINOPS_CHARGEBACK_BUCKET": bucket_name,
                "FINOPS_WORK_DIR": "/tmp",  # noqa: S108
                "LOG_LEVEL": "INFO",
            },
        )
        self.focus, self.focus_role = focus.function, focus.role

        # exporter: LedgerRepository.day (Query on by_day), objects under usage/
        iam.Grant.add_to_principal(grantee=self.exporter, actions=["dynamodb:Query"],
                                   resource_arns=[ledger.index_arn("by_day")])
        iam.Grant.add_to_principal(
            grantee=self.exporter, actions=DYNAMODB_KMS_ACTIONS, resource_arns=[ledger.encryption_key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{stack.region}.amazonaws.com"}})
        self._grant_objects(self.exporter, self.exporter_role, write=[schema.USAGE_PREFIX])
        # FOCUS: read usage/, write focus/
        self._grant_objects(self.focus, self.focus_role, read=[schema.USAGE_PREFIX], write=[schema.FOCUS_PREFIX])

        # --- schedules ---------------------------------------------------------------------------------
        self.scheduler_role = iam.Role(
            self, "SchedulerRole",
            description="EventBridge Scheduler: invoke the FinOps chargeback export functions",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions={"StringEquals": {
                "aws:SourceAccount": stack.account,
                "aws:SourceArn": stack.format_arn(service="scheduler", resource="schedule-group",
                                                  resource_name="default"),
            }}),
        )
        scheduled_time = scheduler.ScheduleTargetInput.from_object(
            {"scheduled_time": scheduler.ContextAttribute.scheduled_time})
        self.daily_schedule = scheduler.Schedule(
            self, "DailyExportSchedule",
            description="Daily 00:45 UTC: export the previous UTC day of the ledger to usage/dt=YYYY-MM-DD/",
            schedule=scheduler.ScheduleExpression.cron(time_zone=TimeZone.ETC_UTC, **DAILY_EXPORT),
            target=_InvokeUnqualified(self.exporter, role=self.scheduler_role, input=scheduled_time,
                                      retry_attempts=3, max_event_age=Duration.hours(6)),
        )
        self.monthly_schedule = scheduler.Schedule(
            self, "MonthlyFocusSchedule",
            description="Monthly, 1st at 03:00 UTC: FOCUS 1.2 export of the previous month",
            schedule=scheduler.ScheduleExpression.cron(time_zone=TimeZone.ETC_UTC, **MONTHLY_FOCUS),
            target=_InvokeUnqualified(self.focus, role=self.scheduler_role, input=scheduled_time,
                                      retry_attempts=3, max_event_age=Duration.hours(6)),
        )

        CfnOutput(self, "BucketName", value=bucket_name,
                  description="Chargeback bucket: usage/dt=YYYY-MM-DD/ (Parquet), focus/billing_period=YYYY-MM/")
        CfnOutput(self, "AthenaWorkGroupName", value=ATHENA_WORKGROUP,
                  description=f"Athena workgroup for the named queries (database {GLUE_DATABASE})")
        CfnOutput(self, "ExporterFunctionName", value=self.exporter.function_name,
                  description='Invoke with {"date": "YYYY-MM-DD"} to (re-)export any day')

    def _table(self, construct_id: str, name: str, location: str, columns: Sequence[schema.Column],
               partition: schema.Column, description: str, projection: dict[str, str]) -> glue.CfnTable:
        table = glue.CfnTable(
            self, construct_id,
            catalog_id=Stack.of(self).account,
            database_name=GLUE_DATABASE,
            table_input=glue.CfnTable.TableInputProperty(
                name=name,
                description=description,
                table_type="EXTERNAL_TABLE",
                parameters={"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD",
                            **projection},
                partition_keys=[glue.CfnTable.ColumnProperty(name=partition.name, type=partition.type,
                                                             comment=partition.comment)],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    columns=[glue.CfnTable.ColumnProperty(name=c.name, type=c.type, comment=c.comment or None)
                             for c in columns],
                    compressed=True,
                    **PARQUET_FORMAT,
                ),
            ),
        )
        table.node.add_dependency(self.database)
        return table

    def _grant_objects(self, grantee: iam.IGrantable, role: iam.IRole, *, read: Sequence[str] = (),
                       write: Sequence[str] = ()) -> None:
        """Object actions on ``<bucket>/<prefix>/*`` only, ListBucket limited to those prefixes, and the KMS
        actions SSE-KMS needs, through S3 only."""
        prefixes = sorted({*read, *write})
        if read:
            iam.Grant.add_to_principal(grantee=grantee, actions=["s3:GetObject"],
                                       resource_arns=[self.bucket.arn_for_objects(f"{p}/*") for p in read])
        if write:
            iam.Grant.add_to_principal(grantee=grantee,
                                       actions=["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                                       resource_arns=[self.bucket.arn_for_objects(f"{p}/*") for p in write])
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["s3:ListBucket"], resource_arns=[self.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{p}/*" for p in prefixes]}})
        iam.Grant.add_to_principal(
            grantee=grantee, actions=S3_KMS_ACTIONS, resource_arns=[self.encryption_key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{Stack.of(self).region}.amazonaws.com"}})
        bucket_id = Stack.of(self).resolve(Stack.of(self).get_logical_id(self.bucket.node.default_child))
        for prefix in prefixes:
            Validations.of(role).acknowledge(Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}/*]",
                reason=OBJECT_WILDCARD_REASON))
