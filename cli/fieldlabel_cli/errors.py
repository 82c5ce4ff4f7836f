"""Errors a user can cause, and their translation into one clear line instead of a traceback.

Exit codes follow the usual convention: 2 for a usage mistake (bad option, malformed e-mail, missing folder),
1 for anything that failed while doing the work (AWS refused, network down, some uploads failed), 130 when the
user pressed Ctrl-C.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure to report as one line on stderr, with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(CliError):
    """The command line asks for something impossible (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


_NOT_FOUND_CODES = {"NoSuchBucket", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AccessDeniedException", "NotAuthorizedException"}
_EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidClientTokenId",
                  "UnrecognizedClientException", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


def error_code(exc: ClientError) -> str:
    """The AWS error code of ``exc`` (``NoSuchBucket``, ``404``, ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate_aws_error(exc: BaseException, *, what: str = "") -> CliError:
    """Turn a boto3/botocore exception into a :class:`CliError` with a message a scientist can act on.

    Args:
        exc: the exception raised by boto3.
        what: the resource being used, e.g. ``"bucket 'photos-intake'"``, so the message can name it.

    Returns:
        A CliError (exit code 1); never raises.
    """
    target = f" {what}" if what else ""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CliError(
            "no AWS credentials found: sign in (e.g. `aws sso login --profile NAME`) and pass --profile NAME, "
            "or set AWS_PROFILE"
        )
    if isinstance(exc, ProfileNotFound):
        return CliError(f"AWS profile not found: {exc.kwargs.get('profile', '')!s} (check --profile / AWS_PROFILE)")
    if isinstance(exc, NoRegionError):
        return CliError("no AWS region configured: pass --region (e.g. --region eu-west-1) or set AWS_REGION")
    if isinstance(exc, EndpointConnectionError):
        return CliError(
            f"cannot reach AWS at {exc.kwargs.get('endpoint_url', 'the endpoint')}: check your network connection "
            "(or --endpoint-url)"
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or ""
        if code in _NOT_FOUND_CODES:
            return CliError(f"not found:{target or ' the resource'} does not exist (check --bucket, --outputs or "
                            "--stack-prefix)")
        if code in _DENIED_CODES:
            return CliError(f"access denied to{target or ' the resource'}: your AWS identity lacks permission "
                            "(ask an operator for the uploader role, or check --profile)")
        if code in _EXPIRED_CODES:
            return CliError(f"AWS rejected your credentials ({code}): they are invalid or expired; sign in again")
        op = exc.operation_name if hasattr(exc, "operation_name") else "request"
        return CliError(f"AWS refused {op}{target}: {code}: {message}".rstrip(": "))
    if isinstance(exc, BotoCoreError):
        return CliError(f"AWS request failed{target}: {exc}")
    return CliError(f"{type(exc).__name__}: {exc}")
