"""AWS Batch for spot training: a Spot compute environment + job queue per AZ, one On-Demand pair, the job
definition and the roles around them.

- Spot: one managed compute environment per AZ ID (its subnet only), ``SPOT_PRICE_CAPACITY_OPTIMIZED``,
  0 vCPUs when idle, so a job sent to that zone's queue runs in that zone and nowhere else.
- On-Demand: one managed EC2 compute environment over every subnet (any zone will do for 10 minutes).
- Job definition: the training container (its image is replaced per job spec by ValidateJobSpec, which
  registers a revision), ``FINOPS_CHECKPOINT_EVERY``, the resources of one instance, and the retry strategy:
  ``Host EC2*`` (the instance was taken back) retries once in place, anything else exits at once.
- No service role: Batch uses its service-linked role (AWSServiceRoleForBatch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_batch as batch
from aws_cdk import aws_iam as iam
from constructs import Construct
from finops.spot.attempts import PREEMPTION_REASON_PATTERN

from infra.constructs.spot_network import SpotNetwork, az_suffix

ECS_INSTANCE_POLICY = "service-role/AmazonEC2ContainerServiceforEC2Role"
ECS_INSTANCE_REASON = (
    "Batch's ECS container instances need the AWS-managed AmazonEC2ContainerServiceforEC2Role (register with "
    "ECS, pull from ECR, write container logs); it is the documented instance role for managed compute envs."
)
JOB_ATTEMPTS = 2  # one in-place retry after a lost host, then the workflow fails over to On-Demand


def retry_strategy() -> batch.CfnJobDefinition.RetryStrategyProperty:
    return batch.CfnJobDefinition.RetryStrategyProperty(
        attempts=JOB_ATTEMPTS,
        evaluate_on_exit=[
            batch.CfnJobDefinition.EvaluateOnExitProperty(on_status_reason=PREEMPTION_REASON_PATTERN, action="RETRY"),
            batch.CfnJobDefinition.EvaluateOnExitProperty(on_reason="*", action="EXIT"),
        ],
    )


class SpotBatch(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: SpotNetwork,
        instance_types: Sequence[str],
        max_vcpus: int,
        image: str,
        resources: Mapping[str, int],
        checkpoint_every: int,
        job_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.instance_role = iam.Role(
            self, "InstanceRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="FinOps spot training: ECS container instances of the Batch compute environments",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(ECS_INSTANCE_POLICY)],
        )
        Validations.of(self.instance_role).acknowledge(Acknowledgment(
            id=f"AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{ECS_INSTANCE_POLICY}]",
            reason=ECS_INSTANCE_REASON))
        profile = iam.CfnInstanceProfile(self, "InstanceProfile", roles=[self.instance_role.role_name])
        security_groups = [network.security_group.attr_group_id]
        tags = {"Application": "finops-gateway", "Capability": "spot-training"}

        def environment(name: str, *, spot: bool, subnets: list[str]) -> batch.CfnComputeEnvironment:
            return batch.CfnComputeEnvironment(
                self, name, type="MANAGED", state="ENABLED",
                compute_resources=batch.CfnComputeEnvironment.ComputeResourcesProperty(
                    type="SPOT" if spot else "EC2",
                    allocation_strategy="SPOT_PRICE_CAPACITY_OPTIMIZED" if spot else "BEST_FIT_PROGRESSIVE",
                    minv_cpus=0, maxv_cpus=max_vcpus, instance_types=list(instance_types),
                    subnets=subnets, security_group_ids=security_groups, instance_role=profile.attr_arn,
                    tags=tags,
                ),
            )

        def queue(name: str, compute: batch.CfnComputeEnvironment) -> batch.CfnJobQueue:
            return batch.CfnJobQueue(
                self, name, priority=1, state="ENABLED",
                compute_environment_order=[batch.CfnJobQueue.ComputeEnvironmentOrderProperty(
                    order=1, compute_environment=compute.ref)],
            )

        self.spot_environments: dict[str, batch.CfnComputeEnvironment] = {}
        self.spot_queues: dict[str, batch.CfnJobQueue] = {}
        for az_id, subnet in network.subnets.items():
            compute = environment(f"Spot{az_suffix(az_id)}", spot=True, subnets=[subnet.ref])
            self.spot_environments[az_id] = compute
            self.spot_queues[az_id] = queue(f"SpotQueue{az_suffix(az_id)}", compute)
        self.on_demand_environment = environment(
            "OnDemand", spot=False, subnets=[s.ref for s in network.subnets.values()])
        self.on_demand_queue = queue("OnDemandQueue", self.on_demand_environment)

        requirements = [batch.CfnJobDefinition.ResourceRequirementProperty(type=kind, value=str(value))
                        for kind, value in resources.items() if value]
        self.job_definition_name = f"{stack.stack_name}-training"
        self.job_definition = batch.CfnJobDefinition(
            self, "JobDefinition", type="container", job_definition_name=self.job_definition_name,
            platform_capabilities=["EC2"], propagate_tags=True, tags=tags,
            container_properties=batch.CfnJobDefinition.ContainerPropertiesProperty(
                image=image, job_role_arn=job_role.role_arn, resource_requirements=requirements,
                environment=[batch.CfnJobDefinition.EnvironmentProperty(
                    name="FINOPS_CHECKPOINT_EVERY", value=str(checkpoint_every))],
            ),
            retry_strategy=retry_strategy(),
        )

    @property
    def spot_queue_arns(self) -> dict[str, str]:
        return {az_id: q.ref for az_id, q in self.spot_queues.items()}

    @property
    def job_definition_arn_pattern(self) -> str:
        """Every revision of the job definition (RegisterJobDefinition, TagResource)."""
        return Stack.of(self).format_arn(service="batch", resource="job-definition",
                                          resource_name=f"{self.job_definition_name}*")
