"""The one exception type the HTTP layer turns into an error response, and its wire body."""

from __future__ import annotations

from typing import Any

# HTTP status -> short machine-readable kind, shown in every error body.
KINDS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """A request the service refuses. `field` names the offending body field (e.g.
    `requests[2].prompt_ids`) when one is to blame; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = int(status), message, field

    def body(self) -> dict[str, Any]:
        """`{"error": {"status", "kind", "field", "message"}}`: the body of every error response."""
        return {"error": {"status": self.status, "kind": KINDS.get(self.status, "error"), "field": self.field, "message": self.message}}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r}, field={self.field!r})"


class EngineUnavailable(ApiError):
    """The SGLang engine is down (died, restarting, or failed to restart): 503 with the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)
