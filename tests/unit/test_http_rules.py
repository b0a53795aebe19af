from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from connectors.http import ApiResponse, check_base_url, default_classify, parse_retry_after, vendor_message


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, headers or {}, body, "", "GET", "/x", 0.0)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "ok"),
        (204, "ok"),
        (408, "retry"),
        (429, "throttled"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (401, "auth"),
        (403, "auth"),
        (400, "rejected"),
        (422, "rejected"),
        (404, "fatal"),
    ],
)
def test_default_classify(status: int, kind: str) -> None:
    assert default_classify(_response(status, {"message": "vendor says no"})).kind == kind


def test_default_classify_keeps_vendor_message_and_retry_hint() -> None:
    verdict = default_classify(_response(429, {"code": "x", "message": "Slow down"}, {"Retry-After": "7"}))
    assert verdict.message == "Slow down"
    assert verdict.retry_after == 7.0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    parsed = parse_retry_after(later)
    assert parsed is not None and 25 <= parsed <= 31


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1", "https://shop.example.com", "http://[::1]:9"]
)
def test_allowed_base_urls(url: str) -> None:
    check_base_url(url)


@pytest.mark.parametrize("url", ["http://shop.example.com", "http://10.0.0.5", "ftp://127.0.0.1", "127.0.0.1:80"])
def test_refused_base_urls(url: str) -> None:
    with pytest.raises(ValueError):
        check_base_url(url)


def test_a_message_that_is_not_json_loses_its_nul() -> None:
    """An error page's text is kept with the record's pending write: PostgreSQL's text holds no NUL."""
    assert vendor_message(None, "  Bad\x00 gateway  ") == "Bad\ufffd gateway"
