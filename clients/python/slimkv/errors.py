"""Typed errors: every failed call raises a subclass of slimkv.Error carrying the gRPC code and
the daemon's message (which starts with the offending field's path for INVALID_ARGUMENT)."""
from __future__ import annotations

import grpc


class Error(Exception):
    """A failed SlimKV call. `code` is the grpc.StatusCode, `message` the daemon's text."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class Cancelled(Error): code = grpc.StatusCode.CANCELLED
class Unknown(Error): code = grpc.StatusCode.UNKNOWN
class InvalidArgument(Error): code = grpc.StatusCode.INVALID_ARGUMENT
class DeadlineExceeded(Error): code = grpc.StatusCode.DEADLINE_EXCEEDED
class NotFound(Error): code = grpc.StatusCode.NOT_FOUND
class AlreadyExists(Error): code = grpc.StatusCode.ALREADY_EXISTS
class PermissionDenied(Error): code = grpc.StatusCode.PERMISSION_DENIED
class ResourceExhausted(Error): code = grpc.StatusCode.RESOURCE_EXHAUSTED
class FailedPrecondition(Error): code = grpc.StatusCode.FAILED_PRECONDITION
class Aborted(Error): code = grpc.StatusCode.ABORTED
class OutOfRange(Error): code = grpc.StatusCode.OUT_OF_RANGE
class Unimplemented(Error): code = grpc.StatusCode.UNIMPLEMENTED
class Internal(Error): code = grpc.StatusCode.INTERNAL
class Unavailable(Error): code = grpc.StatusCode.UNAVAILABLE
class DataLoss(Error): code = grpc.StatusCode.DATA_LOSS
class Unauthenticated(Error): code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE = {cls.code: cls for cls in Error.__subclasses__()}


def from_rpc_error(e: grpc.RpcError) -> Error:
    """The one place a grpc.RpcError becomes a slimkv.Error."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    return _BY_CODE.get(code, Unknown)(details or "", code)
