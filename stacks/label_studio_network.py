"""The Label Studio deployment's network: a VPC of its own, and the security group of the functions that call the API.

Three tiers in two Availability Zones: public subnets hold the internet-facing load balancer and the NAT gateways;
private subnets (egress through NAT) hold the Fargate tasks, the internal load balancer and the pipeline's Label
Studio functions; isolated subnets (no route out) hold the database.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import AppConfig
from stacks.lambda_code import retention_days

# Two Availability Zones: an Application Load Balancer needs subnets in at least two, and the database's subnet group
# (and a Multi-AZ standby) spans both.
ZONES = 2


class LabelStudioNetwork(Construct):
    """Exposes ``vpc``, ``lambda_security_group``, ``lambda_subnets``, ``service_subnets``, ``database_subnets``,
    ``flow_logs`` (the log group of rejected traffic)."""

    def __init__(self, scope: Construct, id_: str, *, config: AppConfig, key: kms.IKey) -> None:
        super().__init__(scope, id_)
        ls = config.label_studio
        assert ls is not None, "LabelStudioNetwork is built only when label_studio is configured"
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(ls.vpc_cidr),
            max_azs=ZONES,
            nat_gateways=ls.nat_gateways,
            # Sized to fit the smallest allowed network (/22): 2 x /26 + 2 x /24 + 2 x /26 = 768 addresses.
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=26),
                ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=26),
            ],
        )
        # Gateway endpoints are free and keep the functions' S3 and DynamoDB traffic off the NAT gateways.
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.vpc.add_gateway_endpoint("DynamoDB", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)

        # Rejected traffic only: that is the security signal (something tried a port no rule opens), and accepted
        # traffic would be most of the log's cost.
        self.flow_logs = logs.LogGroup(
            self,
            "RejectedTraffic",
            retention=retention_days(config.retention.log_retention_days),
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN if config.removal_retain else RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

        self.service_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.lambda_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.database_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        # The pipeline's Label Studio functions: HTTPS out only (the internal load balancer, and AWS APIs through the
        # NAT gateways or the gateway endpoints). The internal load balancer admits this group.
        self.lambda_security_group = ec2.SecurityGroup(
            self,
            "Functions",
            vpc=self.vpc,
            description=f"{config.project}: pipeline functions that call the Label Studio API",
            allow_all_outbound=False,
        )
        self.lambda_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
            "HTTPS: the Label Studio API (internal load balancer) and AWS service endpoints",
        )
