"""CDK infrastructure of the AI FinOps gateway (``python infra/app.py`` synthesizes it into cdk.out/)."""
