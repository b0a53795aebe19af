"""Expiring tokens without HTTP: when a token is fetched, when it is renewed, and what a renewal
after a refusal carries over (the token sources that talk HTTP are tested against the emulators in
tests/contract/test_*_auth.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests

from connectors.auth import ExpiringTokenAuth, Token, TokenSource, TokenVault


class Rotating(TokenSource):
    """Hands out token n with refresh token rn, and remembers which refresh token each fetch got."""

    def __init__(self) -> None:
        self.handed: list[str | None] = []

    def identity(self) -> str:
        return "rotating"

    def fetch(self, previous: Token | None) -> Token:
        self.handed.append(previous.refresh_token if previous else None)
        n = len(self.handed)
        return Token(f"access-{n}", datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=1), f"refresh-{n}")


def signed(auth: ExpiringTokenAuth) -> str:
    request = auth(requests.Request("GET", "https://x.example/").prepare())
    return str(request.headers["Authorization"])


def authenticator(source: Rotating, at: list[datetime]) -> ExpiringTokenAuth:
    def header(request: requests.PreparedRequest, token: Token) -> None:
        request.headers["Authorization"] = token.value

    return ExpiringTokenAuth("shop", source, header, margin=300, vault=TokenVault(), clock=lambda: at[0])


def test_a_token_is_reused_then_renewed_within_the_margin_with_the_newest_refresh_token() -> None:
    source, at = Rotating(), [datetime(2026, 1, 1, tzinfo=UTC)]
    auth = authenticator(source, at)
    assert signed(auth) == signed(auth) == "access-1"
    at[0] += timedelta(minutes=56)  # four minutes left: inside the five-minute margin
    assert signed(auth) == "access-2"
    assert source.handed == [None, "refresh-1"]


def test_a_refused_token_is_renewed_once_carrying_its_rotated_refresh_token() -> None:
    source, at = Rotating(), [datetime(2026, 1, 1, tzinfo=UTC)]
    auth = authenticator(source, at)
    signed(auth)
    assert auth.renew_after_refusal() is True
    assert signed(auth) == "access-2"
    # the renewal had the refresh token the vendor rotated in, not nothing (which would fall back to
    # the configured one, retired by then)
    assert source.handed == [None, "refresh-1"]
    assert auth.renew_after_refusal() is True and auth.renew_after_refusal() is False  # once per send
