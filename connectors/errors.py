"""The errors a connector raises. Everything above `connectors/http.py` sees only these."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mapping.model import WriteResult


class ConnectorError(Exception):
    """Base of every error crmsync raises about a system; names the system in its message."""

    def __init__(self, system: str, message: str) -> None:
        self.system = system
        self.message = message
        super().__init__(f"{system}: {message}")


class AuthError(ConnectorError):
    """The system refused our credentials (wrong, expired or missing permissions)."""


class TokenRefused(AuthError):
    """The vendor's token endpoint refused crmsync's client credentials, refresh token or system
    user: asking again cannot help; the message says what to fix."""


class PermissionDenied(AuthError):
    """The credentials were accepted but lack a right, scope or field the work needs; a new token
    would not change that. The message names what to grant."""


class RateLimited(ConnectorError):
    """The system asked us to slow down; retried after `retry_after` seconds when known."""

    def __init__(self, system: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(system, message)
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """A failure worth retrying: connection drop, timeout, 5xx, a garbled body. `status` is the
    HTTP status of the reply when one came (a 5xx, a garbled 200), None when none did."""

    def __init__(
        self, system: str, message: str, retry_after: float | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(system, message)
        self.retry_after = retry_after
        self.status = status


class RejectedRecord(ConnectorError):
    """The system refused one record's data (validation); the rest of the batch goes on. `status`
    is the HTTP status of the refusal when it came as one (a 404: the record is gone)."""

    def __init__(self, system: str, message: str, record_id: str | None = None, *, status: int | None = None) -> None:
        super().__init__(system, message)
        self.record_id = record_id
        self.status = status


class ApiError(ConnectorError):
    """A failure that retrying will not fix; carries the vendor's own message."""

    def __init__(self, system: str, message: str, status: int | None = None) -> None:
        super().__init__(system, message)
        self.status = status


class RetriesExhausted(ConnectorError):
    """Retries ran out; wraps the last retriable error."""


class PartialWrite(ConnectorError):
    """A bulk write ended without the vendor confirming every record: `results` holds the ones it
    did confirm (recorded as usual); the others are planned again next cycle."""

    def __init__(self, system: str, message: str, results: list[WriteResult]) -> None:
        super().__init__(system, message)
        self.results = results
