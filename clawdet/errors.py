"""The one error type a person may see: an HTTP status, a stable code, a plain message and
what to do next. Raised anywhere below the web app; the web app renders it as a page or JSON."""

from __future__ import annotations


class UserFacingError(Exception):
    status = 400

    def __init__(
        self,
        code: str,
        message: str,
        action: str = "",
        *,
        status: int | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.action = action
        self.field = field
        self.headers = headers or {}
        if status is not None:
            self.status = status

    def as_dict(self) -> dict:
        body = {"code": self.code, "message": self.message, "action": self.action}
        if self.field:
            body["field"] = self.field
        return body
