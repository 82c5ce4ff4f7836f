"""Label Studio as the labeling backend (``labeling.backend: label_studio``; docs/label-studio.md).

Pure domain code and a stdlib (urllib) HTTP client, so the Lambda layer needs no extra dependency.
"""
