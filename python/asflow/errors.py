"""The one exception class of the client side of the package."""

from __future__ import annotations

import grpc


class AsflowError(Exception):
    """A call to asflowd failed, or could not be made: `code` is the gRPC
    status code (UNAVAILABLE when the daemon cannot be reached, with where
    it looked), `message` the daemon's (or the package's) text."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> "AsflowError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            # The daemon says nothing more, by design; we can.
            details = f"asflowd refused the call: missing or wrong token (token_file) ({details})"
        return cls(code, details or code.name)
