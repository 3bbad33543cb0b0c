"""The spot-training VPC: one public subnet pinned to each configured AZ *ID*.

Why build it from L1 resources: the stack is environment-agnostic (synthesized offline, no lookups), so it
cannot ask which AZ names exist, and AZ names map to different physical zones in every account. The hunter,
the price history and the preemption bookkeeping all speak AZ IDs (``use1-az2``); ``AWS::EC2::Subnet``
accepts ``AvailabilityZoneId``, so each subnet is pinned to exactly the zone the hunter scores. The AZ IDs
must belong to the region the stack is deployed to (``spotTraining.az_ids`` context; see docs/spot_training.md).

Public subnets with public IPs and a security group without ingress: the training instances reach ECR, S3
and the ECS/Batch endpoints without a NAT gateway (which would cost more per hour than a Spot GPU saves in
some zones), and nothing can connect to them. Rejected traffic is logged (VPC flow log to CloudWatch Logs).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.function import LOG_RETENTION


def subnet_cidrs(vpc_cidr: str, count: int) -> list[str]:
    """``count`` /20 blocks carved from the start of a /16 (``10.64.0.0/16`` -> 10.64.0.0/20, 10.64.16.0/20, ...)."""
    network, prefix = vpc_cidr.split("/")
    if prefix != "16":
        raise ValueError(f"the spot-training VPC CIDR must be a /16, got {vpc_cidr}")
    if not 1 <= count <= 16:
        raise ValueError(f"between 1 and 16 AZs, got {count}")
    first, second = network.split(".")[:2]
    return [f"{first}.{second}.{i * 16}.0/20" for i in range(count)]


def az_suffix(az_id: str) -> str:
    """``use1-az2`` -> ``Use1Az2`` (a construct id part)."""
    return "".join(part.capitalize() for part in az_id.split("-"))


class SpotNetwork(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, az_ids: Sequence[str], cidr: str) -> None:
        super().__init__(scope, construct_id)
        if len(set(az_ids)) != len(az_ids) or not az_ids:
            raise ValueError(f"az_ids must be distinct and non-empty, got {list(az_ids)}")
        self.vpc = ec2.CfnVPC(self, "Vpc", cidr_block=cidr, enable_dns_hostnames=True, enable_dns_support=True)
        gateway = ec2.CfnInternetGateway(self, "InternetGateway")
        attachment = ec2.CfnVPCGatewayAttachment(self, "GatewayAttachment", vpc_id=self.vpc.ref,
                                                 internet_gateway_id=gateway.ref)
        routes = ec2.CfnRouteTable(self, "PublicRoutes", vpc_id=self.vpc.ref)
        default_route = ec2.CfnRoute(self, "DefaultRoute", route_table_id=routes.ref,
                                     destination_cidr_block="0.0.0.0/0", gateway_id=gateway.ref)
        default_route.node.add_dependency(attachment)  # the route needs the gateway attached

        self.subnets: dict[str, ec2.CfnSubnet] = {}
        for az_id, block in zip(az_ids, subnet_cidrs(cidr, len(az_ids)), strict=True):
            subnet = ec2.CfnSubnet(self, f"Subnet{az_suffix(az_id)}", vpc_id=self.vpc.ref, cidr_block=block,
                                   availability_zone_id=az_id, map_public_ip_on_launch=True)
            ec2.CfnSubnetRouteTableAssociation(self, f"Routes{az_suffix(az_id)}", subnet_id=subnet.ref,
                                               route_table_id=routes.ref)
            self.subnets[az_id] = subnet

        self.security_group = ec2.CfnSecurityGroup(
            self, "InstanceSecurityGroup", vpc_id=self.vpc.ref,
            group_description="FinOps spot training instances: no ingress, all egress (ECR, S3, Batch endpoints)",
            security_group_egress=[ec2.CfnSecurityGroup.EgressProperty(
                ip_protocol="-1", cidr_ip="0.0.0.0/0", description="ECR, S3, ECS and Batch over HTTPS")],
        )

        flow_logs = logs.LogGroup(self, "FlowLogs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.RETAIN)
        flow_role = iam.Role(self, "FlowLogRole", assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"),
                             description="VPC flow logs of the FinOps spot-training VPC: its own log group")
        flow_logs.grant_write(flow_role)
        flow_logs.grant(flow_role, "logs:DescribeLogStreams")
        ec2.CfnFlowLog(self, "FlowLog", resource_id=self.vpc.ref, resource_type="VPC", traffic_type="REJECT",
                       log_destination_type="cloud-watch-logs", log_group_name=flow_logs.log_group_name,
                       deliver_logs_permission_arn=flow_role.role_arn)
