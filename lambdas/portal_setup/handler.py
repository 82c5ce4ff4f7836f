"""Deploy-time custom resource (CDK Provider framework) that connects Cognito to the labeling portal."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.observability import logger
from fieldlabel.workforce.portal import PortalSettings, set_up_portal


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = PortalSettings.from_properties(event["ResourceProperties"])
    physical_id = f"portal-{settings.user_pool_id}-{settings.workteam_name}"
    if event["RequestType"] == "Delete":
        # People and their pool outlive the stack (the pool follows its own removal policy); nothing to undo.
        return {"PhysicalResourceId": event.get("PhysicalResourceId", physical_id)}
    data = set_up_portal(boto3.client("cognito-idp"), boto3.client("sagemaker"), settings)
    logger.info("portal set up", extra={"portal_url": data["PortalUrl"], "members": len(settings.members)})
    return {"PhysicalResourceId": physical_id, "Data": data}
