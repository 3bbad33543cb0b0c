"""The usage ledger table, its keys derived from the PynamoDB model so the two cannot drift."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from finops.ledger.model import LedgerRow

from infra.constructs.model_table import ModelTable, model_table_schema

__all__ = ["LedgerTable", "model_table_schema"]


class LedgerTable(ModelTable):
    """One immutable item per gateway call (``finops.ledger.model.LedgerRow``).

    On-demand, point-in-time recovery, SSE with the given customer-managed key, deletion protection
    and RETAIN: the ledger is the chargeback record, so nothing here may lose it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey) -> None:
        super().__init__(scope, construct_id, model=LedgerRow, encryption_key=encryption_key)

    def grant_gateway_access(self, grantee: iam.IGrantable) -> None:
        """Exactly what ``LedgerRepository`` does: conditional PutItem, GetItem, Query on the model's indexes.

        The settlement transaction (``BucketStore.settle``) puts the ledger row with ``TransactWriteItems``,
        which IAM authorizes per item: PutItem on this table covers it.
        """
        self.grant(grantee, ["dynamodb:PutItem", "dynamodb:GetItem"],
                   index_actions=[("dynamodb:Query", name) for name in self.index_names])

    def grant_append(self, grantee: iam.IGrantable) -> None:
        """``LedgerRepository.append`` and ``.get`` only (the reconciler's rows): PutItem, GetItem."""
        self.grant(grantee, ["dynamodb:PutItem", "dynamodb:GetItem"])
