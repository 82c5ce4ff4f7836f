"""Executed IAM: record the AWS calls the real code makes and check them against the synthesized templates' IAM.

``principals`` (who is calling; the harness sets it), ``recorder`` (botocore hooks), ``actions`` (call -> IAM
actions, resources and service semantics), ``policies`` (the templates' identity and resource policies),
``evaluate`` (the policy evaluator), ``check`` (the check and the unexercised-grants report), ``session`` (the
test session's report). See docs/decisions.md, "Executed IAM".
"""
