"""Finding the deployed resources' names: explicit options, a local outputs file, or CloudFormation outputs.

Order of precedence, per name: an explicit option (``--bucket``, ``--user-pool-id``, ...) wins; then the outputs
file (``--outputs FILE`` or ``FIELDLABEL_OUTPUTS``, written by the offline demo or by ``cdk deploy --outputs-file``);
then the outputs of the stacks ``<prefix>-Storage`` and ``<prefix>-Workforce`` read with DescribeStacks, and
``<prefix>-Pipeline`` for a name those lack (the dispatcher's). The stacks are only read when a name is actually
needed, so commands that need nothing from AWS never call it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fieldlabel_cli.errors import CliError, UsageError, error_code, translate_aws_error

# The prod environment's `project` in cdk.json; dev deploys as "treelabel-dev" (use --stack-prefix).
DEFAULT_STACK_PREFIX = "treelabel"
STACK_SUFFIXES = ("Storage", "Workforce")
# Read only when a name is not among the first stacks' outputs (the operator commands need the dispatcher etc.).
LATE_STACK_SUFFIXES = ("Pipeline", "LabelStudio")

# Output key -> the option that overrides it, for error messages.
KNOWN_OUTPUTS: dict[str, str] = {
    "IntakeBucketName": "--bucket",
    "UserPoolId": "--user-pool-id",
    "TaxonomistsGroup": "--taxonomists-group",
    "ReviewersGroup": "--reviewers-group",
    "ArtifactsBucketName": "--artifacts-bucket",
    "PhotosTableName": "--photos-table",
    "BatchesTableName": "--batches-table",
    "DispatchFunctionName": "--dispatch-function",
    "StateMachineArn": "--state-machine",
    "LabelStudioUrl": "--label-studio-url",
    "LabelStudioTokenSecretArn": "--label-studio-token-secret",
    "LabelStudioAccountsFunctionName": "--label-studio-accounts-function",
}
# Output keys the stacks actually write for a name (the Workforce stack says ...GroupName).
ALIASES: dict[str, tuple[str, ...]] = {
    "TaxonomistsGroup": ("TaxonomistsGroup", "TaxonomistsGroupName"),
    "ReviewersGroup": ("ReviewersGroup", "ReviewersGroupName"),
}


def load_outputs_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an outputs file: either flat ``{"IntakeBucketName": "..."}`` or the ``cdk deploy --outputs-file``
    shape ``{"<stack>": {"IntakeBucketName": "..."}}`` (stacks merged).

    Raises:
        UsageError: the file is missing or is not a JSON object of strings.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"outputs file not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"outputs file {p} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"outputs file {p} must hold a JSON object like {{\"IntakeBucketName\": \"...\"}}")
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({k: str(v) for k, v in value.items() if isinstance(v, str | int)})
        elif isinstance(value, str | int):
            flat[key] = str(value)
    return flat


class ResourceResolver:
    """Resolves output names (``IntakeBucketName``, ``UserPoolId``, ``TaxonomistsGroup``, ``ReviewersGroup``)."""

    def __init__(
        self,
        *,
        explicit: Mapping[str, str | None] | None = None,
        outputs_file: str | os.PathLike[str] | None = None,
        stack_prefix: str | None = None,
        cloudformation: Callable[[], Any] | None = None,
    ) -> None:
        self._explicit = {k: v for k, v in (explicit or {}).items() if v}
        self._outputs_file = outputs_file or os.environ.get("FIELDLABEL_OUTPUTS") or None
        self.stack_prefix = stack_prefix or os.environ.get("FIELDLABEL_STACK_PREFIX") or DEFAULT_STACK_PREFIX
        self._cloudformation = cloudformation
        self._file_outputs: dict[str, str] | None = None
        self._stack_outputs: dict[str, str] | None = None
        self._stacks_found: list[str] = []
        self._late_read = False

    @property
    def stack_names(self) -> list[str]:
        """The stacks whose outputs are read."""
        return [f"{self.stack_prefix}-{suffix}" for suffix in STACK_SUFFIXES]

    @property
    def late_stack_names(self) -> list[str]:
        """Stacks read only for a name the first ones lack (``<prefix>-Pipeline``)."""
        return [f"{self.stack_prefix}-{suffix}" for suffix in LATE_STACK_SUFFIXES]

    def get(self, name: str) -> str:
        """The value of output ``name``.

        Raises:
            CliError: no source knows the name (the message says which option to pass), or CloudFormation failed.
        """
        if name in self._explicit:
            return str(self._explicit[name])
        keys = ALIASES.get(name, (name,))
        if self._outputs_file:
            if self._file_outputs is None:
                self._file_outputs = load_outputs_file(self._outputs_file)
            for key in keys:
                if key in self._file_outputs:
                    return self._file_outputs[key]
            raise CliError(f"{name} is not in outputs file {self._outputs_file}; pass {KNOWN_OUTPUTS.get(name, name)}")
        outputs = self._read_stacks()
        if not any(key in outputs for key in keys):
            outputs = self._read_late_stacks()
        for key in keys:
            if key in outputs:
                return outputs[key]
        where = (", ".join(self._stacks_found) if self._stacks_found
                 else f"no stack named {' or '.join(self.stack_names + self.late_stack_names)}")
        raise CliError(
            f"cannot find {name}: not among the outputs of {where}; pass {KNOWN_OUTPUTS.get(name, name)}, "
            "--outputs FILE, or the right --stack-prefix"
        )

    def find(self, name: str) -> str | None:
        """The value of output ``name``, or None when no source has it (for outputs only some deployments have,
        such as ``LabelStudioUrl``: its absence means the deployment labels with Ground Truth)."""
        if name in self._explicit:
            return str(self._explicit[name])
        keys = ALIASES.get(name, (name,))
        if self._outputs_file:
            if self._file_outputs is None:
                self._file_outputs = load_outputs_file(self._outputs_file)
            return next((self._file_outputs[k] for k in keys if k in self._file_outputs), None)
        outputs = self._read_stacks()
        if not any(key in outputs for key in keys):
            outputs = self._read_late_stacks()
        return next((outputs[k] for k in keys if k in outputs), None)

    def _read_stacks(self) -> dict[str, str]:
        if self._stack_outputs is not None:
            return self._stack_outputs
        self._stack_outputs = self._describe(self.stack_names)
        return self._stack_outputs

    def _read_late_stacks(self) -> dict[str, str]:
        outputs = self._read_stacks()
        if not self._late_read:
            self._late_read = True
            outputs.update(self._describe(self.late_stack_names))
        return outputs

    def _describe(self, stacks: list[str]) -> dict[str, str]:
        if self._cloudformation is None:
            return {}
        client = self._cloudformation()
        merged: dict[str, str] = {}
        for stack in stacks:
            try:
                response = client.describe_stacks(StackName=stack)
            except ClientError as exc:
                # DescribeStacks answers ValidationError "Stack with id X does not exist" for a missing stack.
                if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                    continue
                raise translate_aws_error(exc, what=f"stack {stack!r}") from exc
            except BotoCoreError as exc:
                raise translate_aws_error(exc) from exc
            self._stacks_found.append(stack)
            for s in response.get("Stacks", []):
                for output in s.get("Outputs", []) or []:
                    merged[output["OutputKey"]] = output["OutputValue"]
        return merged
