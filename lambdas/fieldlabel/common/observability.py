"""Powertools Logger, Tracer and Metrics, built once per process and shared by every handler."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "fieldlabel")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "FieldLabel")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
