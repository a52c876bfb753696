"""Errors that fleetdeck raises to its users.

Every error a user can cause (a wrong URL, a bad token, an unknown id, a malformed value) is a
``FleetdeckError`` with a message that names the problem in one line; the CLI prints that line and
exits 2 instead of showing a traceback.
"""

from __future__ import annotations


class FleetdeckError(Exception):
    """Base class for every error fleetdeck reports to a user."""


class ConfigError(FleetdeckError):
    """A configuration file or environment variable holds a value fleetdeck cannot use."""


class ServerUnreachable(FleetdeckError):
    """The tracking server did not answer (refused, timed out, DNS failure)."""


class AuthError(FleetdeckError):
    """The server refused the token (missing, wrong, revoked or lacking the role)."""


class NotFound(FleetdeckError):
    """The server has no object with the given id or name."""


class RequestRejected(FleetdeckError):
    """The server rejected a request as malformed or conflicting (HTTP 4xx)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ServerError(FleetdeckError):
    """The server failed (HTTP 5xx) or is out of space; the request was not acknowledged."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code
