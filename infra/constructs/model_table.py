"""A DynamoDB table whose keys and indexes are read from a PynamoDB model, so the two cannot drift.

Every table of the gateway (ledger, keys, budgets) is one of these: on-demand, point-in-time recovery,
SSE with the stack's customer-managed KMS key, deletion protection and RETAIN. Grants are written out
action by action (``grant``) instead of CDK's ``grant_read_write_data``, whose statements carry
``<table>/index/*`` and ``kms:GenerateDataKey*``-style wildcards.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

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
# What a caller needs on the table's customer-managed key; DynamoDB uses it on the caller's behalf.
DYNAMODB_KMS_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]


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


def model_table_schema(model: type[Any]) -> dict[str, Any]:
    """The table's keys and indexes as CDK props, read from the PynamoDB model's own schema."""
    schema = model._get_schema()
    definitions = schema["attribute_definitions"]
    return {
        "keys": _keys(schema["key_schema"], definitions),
        "global_secondary_indexes": [_index_props(i, definitions) for i in schema[GSIS]],
        "local_secondary_indexes": [_index_props(i, definitions) for i in schema[LSIS]],
    }


class ModelTable(Construct):
    """The table of one PynamoDB model (child ``Table``), protected and encrypted with ``encryption_key``.

    ``time_to_live_attribute``: DynamoDB TTL on that attribute (a number attribute of the model, epoch seconds).
    """

    def __init__(self, scope: Construct, construct_id: str, *, model: type[Any], encryption_key: kms.IKey,
                 time_to_live_attribute: str | None = None) -> None:
        super().__init__(scope, construct_id)
        if time_to_live_attribute is not None:
            attribute = model.get_attributes().get(time_to_live_attribute)
            if attribute is None or attribute.attr_type != "N":
                raise ValueError(f"{model.__name__} has no number attribute {time_to_live_attribute!r} for TTL")
        schema = model_table_schema(model)
        self.model = model
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
            time_to_live_attribute=time_to_live_attribute,
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

    @property
    def table_arn(self) -> str:
        return self.table.table_arn

    def index_arn(self, index_name: str) -> str:
        if index_name not in self.index_names:
            raise ValueError(f"{self.model.__name__} has no index {index_name!r} (has {self.index_names})")
        return f"{self.table.table_arn}/index/{index_name}"

    def grant(self, grantee: iam.IGrantable, actions: Sequence[str], *,
              index_actions: Iterable[tuple[str, str]] = ()) -> None:
        """``actions`` on the table itself, ``(action, index name)`` pairs on single indexes, and the KMS
        actions DynamoDB needs on the table key (through DynamoDB only)."""
        iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=[self.table_arn])
        by_action: dict[str, list[str]] = {}
        for action, index_name in index_actions:
            by_action.setdefault(action, []).append(self.index_arn(index_name))
        for action, arns in by_action.items():
            iam.Grant.add_to_principal(grantee=grantee, actions=[action], resource_arns=arns)
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=DYNAMODB_KMS_ACTIONS,
            resource_arns=[self.encryption_key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{Stack.of(self).region}.amazonaws.com"}},
        )
