"""The budgets table (PynamoDB model used for its schema; the bucket engine speaks boto3 directly)."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from ..dynamo import bind as bind_model

TTL_ATTRIBUTE = "expires_at"


class BudgetItem(Model):
    class Meta:
        table_name = "finops-budgets"
        billing_mode = "PAY_PER_REQUEST"

    pk = UnicodeAttribute(hash_key=True)
    expires_at = NumberAttribute(null=True)  # TTL (epoch seconds) on alert markers and loop counters


def bind(table_name: str) -> type[BudgetItem]:
    return bind_model(BudgetItem, table_name)
