"""The keys table (PynamoDB). Hash key: sha256 of the key; the key itself is never stored."""

from __future__ import annotations

from pynamodb.attributes import ListAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ..dynamo import bind as bind_model


class ByKeyIdIndex(GlobalSecondaryIndex["ApiKey"]):
    class Meta:
        index_name = "by_key_id"
        projection = AllProjection()

    key_id = UnicodeAttribute(hash_key=True)


class ApiKey(Model):
    class Meta:
        table_name = "finops-keys"
        billing_mode = "PAY_PER_REQUEST"

    key_hash = UnicodeAttribute(hash_key=True)
    key_id = UnicodeAttribute()  # public handle, e.g. vk_3f9a1c2b7d4e
    name = UnicodeAttribute()
    tier = UnicodeAttribute()
    projects = ListAttribute(of=UnicodeAttribute)  # ["*"] for any
    environments = ListAttribute(of=UnicodeAttribute)  # ["*"] for any
    user_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="active")  # active | revoked
    created_at = UnicodeAttribute()
    revoked_at = UnicodeAttribute(null=True)
    replaced_by = UnicodeAttribute(null=True)

    by_key_id = ByKeyIdIndex()


def bind(table_name: str) -> type[ApiKey]:
    return bind_model(ApiKey, table_name)
