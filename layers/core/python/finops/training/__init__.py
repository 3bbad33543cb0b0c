"""The Spot training entrypoint: a checkpoint-aware PyTorch loop that survives preemption.

``python -m finops.training`` is what the AWS Batch job's container runs. It resumes from the newest valid
checkpoint in S3, saves one every N steps (object first, then a manifest with its checksum), and checkpoints
before it stops on SIGTERM, on the EC2 two-minute Spot interruption notice or at the end of a time box.

This package (and only this package) imports torch: the Lambdas never import it. Nothing here reads the
environment or touches AWS at import time.
"""
