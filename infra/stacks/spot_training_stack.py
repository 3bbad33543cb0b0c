"""The spot-training stack: composes ``SpotTraining``; its only tie to the gateway is the ledger table.

A stack of its own (the ledger table name/ARN and its key are the only cross-stack references): it can be
deployed, updated and torn down (VPC, Batch) without touching the gateway,
and the gateway stack's reviewed cdk-nag acknowledgments stay its own. Environment-agnostic like the
gateway stack; the AZ IDs of its subnets come from the ``spotTraining`` context (docs/spot_training.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Stack, Tags
from constructs import Construct

from infra.constructs.layers import GatewayLayers
from infra.constructs.ledger_table import LedgerTable
from infra.constructs.spot_training import SpotTraining, SpotTrainingConfig


class SpotTrainingStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, ledger: LedgerTable,
                 config: SpotTrainingConfig | None = None, deps_layer_dir: Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("Application", "finops-gateway")
        Tags.of(self).add("Capability", "spot-training")
        # Its own layer versions (same assets as the gateway's): a layer ARN exported from the gateway stack
        # would block every gateway deploy that publishes a new layer version while this stack imports it.
        self.layers = GatewayLayers(self, "Layers", deps_dir=deps_layer_dir)
        self.training = SpotTraining(self, "SpotTraining", layers=self.layers.all, ledger=ledger,
                                     config=config or SpotTrainingConfig.from_context(self))
