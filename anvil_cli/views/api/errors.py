"""The API's error answer: a status and a JSON body `{"error": reason, ...}`."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised by a handler to answer with an HTTP error and a JSON reason."""

    def __init__(
        self,
        status: int,
        message: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}
