"""Secrets Manager secrets holding the upstream providers' API keys (one plain-string secret each)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct
from finops.settings import ProviderConfig, Settings


def default_providers() -> dict[str, ProviderConfig]:
    """The providers (and their secret names) the gateway uses when ``FINOPS_PROVIDERS`` is unset."""
    return Settings.model_fields["providers"].get_default(call_default_factory=True)


class ProviderSecrets(Construct):
    """``finops/providers/<name>`` for every provider the gateway knows by default that takes an API key
    (openai, groq, anthropic; Bedrock is called with the function's IAM role).

    The names come from ``finops.settings`` (the gateway reads them there with Powertools'
    ``parameters.get_secret``). CloudFormation creates each with a random placeholder value; put the
    real key with ``aws secretsmanager put-secret-value --secret-id finops/providers/openai
    --secret-string sk-...``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.secrets: dict[str, secretsmanager.Secret] = {}
        for name, provider in default_providers().items():
            if provider.secret_name is None:
                continue
            secret = secretsmanager.Secret(
                self, name.capitalize(),
                secret_name=provider.secret_name,
                description=f"{name} API key for the FinOps gateway (plain string); replace the placeholder",
                encryption_key=encryption_key,
            )
            Validations.of(secret).acknowledge(Acknowledgment(
                id="AwsSolutions::AwsSolutions-SMG4",
                reason=(
                    f"{name}'s API key is issued by the provider's own console/API, which Secrets Manager "
                    "cannot call; it is rotated by an operator with put-secret-value (the gateway re-reads "
                    "it within secret_max_age_seconds), so no rotation Lambda is scheduled."
                ),
            ))
            self.secrets[name] = secret

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """GetSecretValue/DescribeSecret on each secret, plus kms:Decrypt via Secrets Manager only."""
        for secret in self.secrets.values():
            secret.grant_read(grantee)
