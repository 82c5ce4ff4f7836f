"""What the pipeline's Label Studio functions need from the Label Studio deployment (labeling.backend 'label_studio').

The deployment (VPC, Fargate service, load balancers, database, secrets) is built by the Label Studio stack; the
pipeline stack receives this and gives its Label Studio functions the network placement and secrets below.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_secretsmanager as secretsmanager


@dataclass(frozen=True)
class LabelStudioRefs:
    """Network placement and secrets of the functions that call Label Studio's API."""

    vpc: ec2.IVpc
    # The security group those functions get; the service admits it on the API endpoint.
    lambda_security_group: ec2.ISecurityGroup
    lambda_subnets: ec2.SubnetSelection
    # What a function inside the VPC calls (no trailing slash), e.g. https://labels.example.org.
    api_url: str
    # The admin's API token (the one the container is bootstrapped with) and the webhooks' shared secret.
    token_secret: secretsmanager.ISecret
    webhook_secret: secretsmanager.ISecret
