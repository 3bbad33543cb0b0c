"""The virtual keys table (``finops.keys.model.ApiKey``): sha256 of each key, its bindings and status."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from finops.keys.model import ApiKey, ByKeyIdIndex

from infra.constructs.model_table import ModelTable

BY_KEY_ID = ByKeyIdIndex.Meta.index_name


class KeysTable(ModelTable):
    """Hash key ``key_hash``, GSI ``by_key_id`` (ALL), both read from the PynamoDB model.

    Protected like the ledger (PITR, customer-managed key, deletion protection, RETAIN): losing it would
    lock every client out.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey) -> None:
        super().__init__(scope, construct_id, model=ApiKey, encryption_key=encryption_key)

    def grant_authenticate(self, grantee: iam.IGrantable) -> None:
        """``KeyService.authenticate``: one GetItem by key hash."""
        self.grant(grantee, ["dynamodb:GetItem"])

    def grant_admin(self, grantee: iam.IGrantable) -> None:
        """``KeyService`` admin calls: create (conditional PutItem), get (Query ``by_key_id`` + GetItem),
        list (Scan), revoke/rotate (UpdateItem). No DeleteItem: revoked keys stay for the audit trail."""
        self.grant(
            grantee,
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"],
            index_actions=[("dynamodb:Query", BY_KEY_ID)],
        )
