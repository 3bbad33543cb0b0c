"""Binding PynamoDB models to the table names and region of this deployment (read at run time)."""

from __future__ import annotations

from typing import TypeVar

from pynamodb.models import Model

from .aws import region

M = TypeVar("M", bound=type[Model])


def bind(model: M, table_name: str) -> M:
    """Point ``model`` at ``table_name`` in the current region, dropping a connection made for another."""
    if model.Meta.table_name != table_name or getattr(model.Meta, "region", None) != region():
        model.Meta.table_name = table_name
        model.Meta.region = region()
        model._connection = None
    return model
