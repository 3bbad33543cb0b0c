"""The usage ledger table, its keys derived from the PynamoDB model so the two cannot drift."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from finops.ledger.model import LedgerRow

GSIS, LSIS = "global_secondary_indexes", "local_secondary_indexes"
_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS = {
    "ALL": dynamodb.ProjectionType.ALL,
    "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
    "INCLUDE": dynamodb.ProjectionType.INCLUDE,
}


def _keys(
    key_schema: list[dict[str, str]], definitions: list[dict[str, str]],
) -> dict[str, dynamodb.Attribute]:
    """``{"partition_key": ..., "sort_key": ...}`` from a DynamoDB KeySchema + AttributeDefinitions pair."""
    types = {d["AttributeName"]: d["AttributeType"] for d in definitions}
    keys: dict[str, dynamodb.Attribute] = {}
    for key in key_schema:
        name = key["AttributeName"]
        role = {"HASH": "partition_key", "RANGE": "sort_key"}[key["KeyType"]]
        keys[role] = dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[types[name]])
    return keys


def _index_props(index: dict[str, Any], definitions: list[dict[str, str]]) -> dict[str, Any]:
    projection = index.get("projection", {})
    props: dict[str, Any] = {
        "index_name": index["index_name"],
        "projection_type": _PROJECTIONS[projection.get("ProjectionType", "ALL")],
        **_keys(index["key_schema"], index.get("attribute_definitions") or definitions),
    }
    if projection.get("NonKeyAttributes"):
        props["non_key_attributes"] = list(projection["NonKeyAttributes"])
    return props


def model_table_schema(model: type[Any] = LedgerRow) -> dict[str, Any]:
    """The table's keys and indexes as CDK props, read from the PynamoDB model's own schema."""
    schema = model._get_schema()
    definitions = schema["attribute_definitions"]
    return {
        "keys": _keys(schema["key_schema"], definitions),
        "global_secondary_indexes": [_index_props(i, definitions) for i in schema[GSIS]],
        "local_secondary_indexes": [_index_props(i, definitions) for i in schema[LSIS]],
    }


class LedgerTable(Construct):
    """One immutable item per gateway call (``finops.ledger.model.LedgerRow``).

    On-demand, point-in-time recovery, SSE with the given customer-managed key, deletion protection
    and RETAIN: the ledger is the chargeback record, so nothing here may lose it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        schema = model_table_schema(LedgerRow)
        self.encryption_key = encryption_key
        self.table = dynamodb.Table(
            self, "Table",
            **schema["keys"],
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True,
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=encryption_key,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for gsi in schema["global_secondary_indexes"]:
            self.table.add_global_secondary_index(**gsi)
        for lsi in schema["local_secondary_indexes"]:
            lsi.pop("partition_key", None)  # an LSI shares the table's partition key
            self.table.add_local_secondary_index(**lsi)
        self.index_names = [i["index_name"] for i in schema["global_secondary_indexes"]]

    @property
    def table_name(self) -> str:
        return self.table.table_name

    def grant_gateway_access(self, grantee: iam.IGrantable) -> None:
        """Exactly what ``LedgerRepository`` does: conditional PutItem, GetItem, Query on the model's indexes.

        Written out instead of ``grant_read_write_data`` so no statement needs a wildcard
        (CDK's grants add ``<table>/index/*`` and ``kms:GenerateDataKey*``-style actions).
        """
        table_arn = self.table.table_arn
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:PutItem", "dynamodb:GetItem"],
            resource_arns=[table_arn],
        )
        if self.index_names:
            iam.Grant.add_to_principal(
                grantee=grantee,
                actions=["dynamodb:Query"],
                resource_arns=[f"{table_arn}/index/{name}" for name in self.index_names],
            )
        # SSE-KMS with a customer-managed key: DynamoDB uses the key on the caller's behalf.
        region = Stack.of(self).region
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resource_arns=[self.encryption_key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}},
        )
