"""Errors of the Solana localnet server: start-up problems and JSON-RPC errors with the real codes."""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 codes and Agave's custom ones (rpc-client-api/src/custom_error.rs).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SEND_TRANSACTION_PREFLIGHT_FAILURE = -32002
TRANSACTION_SIGNATURE_VERIFICATION_FAILURE = -32003
BLOCK_NOT_AVAILABLE = -32004
TRANSACTION_SIGNATURE_LEN_MISMATCH = -32013
UNSUPPORTED_TRANSACTION_VERSION = -32015
MIN_CONTEXT_SLOT_NOT_REACHED = -32016


class LocalnetError(Exception):
    """Base class of the server's own errors (not JSON-RPC errors sent to clients)."""


class PortInUseError(LocalnetError):
    def __init__(self, host: str, port: int, flag: str) -> None:
        super().__init__(f"port {port} on {host} is in use: stop the process holding it or pass {flag}")
        self.host = host
        self.port = port


class ProgramLoadError(LocalnetError):
    pass


class RpcError(Exception):
    """A JSON-RPC error object the client receives as is."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)
