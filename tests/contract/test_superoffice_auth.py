"""SuperOffice Online sign-in as documented, against the emulator, over real HTTP: the system-user
ticket (a signed system user token exchanged for a JWT whose ticket lives six hours after each
use), the OIDC refresh-token grant (access tokens of an hour), and the sale statuses a Dutch
tenant shows in Dutch unless asked for English."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from connectors.auth import TOKENS
from connectors.errors import TokenRefused
from connectors.superoffice.auth import verified_claims
from connectors.superoffice.sandbox import DEFAULT_CLIENT_ID, DEFAULT_REFRESH_TOKEN
from mapping.model import Kind, RecordProblem
from sync.pipeline import make_mapper
from tests.contract.test_superoffice_sandbox import persons, sales
from tests.kit import Sandboxes, make_connector, secret

AUTHENTICATE = "POST /Login/api/PartnerSystemUser/Authenticate"
OIDC = "POST /login/common/oauth/tokens"
PERSON = "GET /<tenant>/api/v1/Person"


@pytest.fixture
def so(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"superoffice": {"customers": persons(30), "orders": sales(12)}})


def requested(so: Sandboxes, route: str) -> int:
    return int(so.stats("superoffice")["requests"].get(route, 0))


def app(so: Sandboxes, **change: Any) -> None:
    requests.patch(f"{so.url('superoffice')}/_sandbox/app", json=change, timeout=5).raise_for_status()


def oidc(so: Sandboxes) -> dict[str, Any]:
    return {
        "auth": "oidc",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": so.app("superoffice").app_token,
        "refresh_token": DEFAULT_REFRESH_TOKEN,
        "app_token": None,
        "private_key": None,
        "system_user_token": None,
    }


def test_the_system_user_ticket_is_got_once_and_used_by_every_call(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=10)
    assert connector.settings.auth == "system_user"
    assert connector.check().missing == []
    assert len([r for page in connector.read_contacts(None) for r in page.records]) == 30
    make_connector(so, "superoffice").check()  # the next cycle in this process
    assert requested(so, AUTHENTICATE) == 1 and so.stats("superoffice")["errors"] == 0
    assert so.stats("superoffice")["writes"] == 0  # check and reads change nothing


def test_a_ticket_expired_mid_read_is_renewed_once_and_the_read_finishes(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=10)
    so.fault("superoffice", match="GET /Cust12345/api/v1/Person", fault="expire-token", after=2)
    ids = [r.id for page in connector.read_contacts(None) for r in page.records]
    assert ids == [str(i) for i in range(1, 31)]
    assert requested(so, AUTHENTICATE) == 2
    assert [e["status"] for e in so.request_log("superoffice") if e["status"] == 401] == [401]


def test_a_ticket_lives_on_while_it_is_used(so: Sandboxes) -> None:
    app(so, token_ttl_s=3600)
    connector = make_connector(so, "superoffice")
    connector.check()
    issued = so.app("superoffice").issued
    ticket = next(value for value, token in issued.items() if value.startswith("7T:"))
    first = issued[ticket].expires_at
    connector.check()
    assert issued[ticket].expires_at > first  # every use starts its six hours (here one) again
    assert requested(so, AUTHENTICATE) == 1


def test_a_key_that_is_not_the_applications_is_refused_naming_what_to_fix(so: Sandboxes) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    connector = make_connector(so, "superoffice", private_key=secret(pem))
    with pytest.raises(TokenRefused, match=r"InvalidSignature.*check app_token.*private_key"):
        connector.check()
    assert requested(so, AUTHENTICATE) == 1 and requested(so, PERSON) == 0  # not retried, nothing read
    with pytest.raises(TokenRefused, match="Unknown system user token"):
        make_connector(so, "superoffice", system_user_token=secret("someone-elses-system-user")).check()
    # A key that cannot sign anything is refused with the settings, before any request.
    with pytest.raises(ValidationError, match="private_key: is not a usable RSA private key"):
        make_connector(so, "superoffice", private_key=secret("-----BEGIN nonsense-----"))


def test_a_jwt_not_signed_by_superoffice_gives_no_ticket(so: Sandboxes) -> None:
    jwks = requests.get(f"{so.url('superoffice')}/login/.well-known/jwks", timeout=5).json()
    genuine = so.app("superoffice")._jwt("7T:genuine")
    assert (
        verified_claims("superoffice", genuine, jwks)["http://schemes.superoffice.net/identity/ticket"] == "7T:genuine"
    )
    header, payload, _ = genuine.split(".")
    with pytest.raises(TokenRefused, match="does not match"):
        verified_claims("superoffice", f"{header}.{payload}.AAAA", jwks)  # a forged signature
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    other_keys = {"keys": [{**jwks["keys"][0], "n": _b64(stranger.n)}]}
    with pytest.raises(TokenRefused, match="does not match"):
        verified_claims("superoffice", genuine, other_keys)  # signed, but not by the published key


def _b64(number: int) -> str:
    import base64

    return base64.urlsafe_b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).decode().rstrip("=")


def test_an_oidc_access_token_is_renewed_with_the_refresh_token(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=10, **oidc(so))
    assert connector.check().missing == []
    assert requested(so, OIDC) == 1
    so.fault("superoffice", match="GET /Cust12345/api/v1/Person", fault="expire-token", after=1)
    assert len([r for page in connector.read_contacts(None) for r in page.records]) == 30
    assert requested(so, OIDC) == 2
    # Tokens no longer than the renewal margin are renewed before each use: never a 401 for them.
    app(so, token_ttl_s=300)
    TOKENS.clear()
    before = len([e for e in so.request_log("superoffice") if e["status"] == 401])
    early = make_connector(so, "superoffice", token_renew_margin=300, **oidc(so))
    early.check()
    assert requested(so, OIDC) == 2 + early.client.stats.requests  # one per call, each before its use
    assert len([e for e in so.request_log("superoffice") if e["status"] == 401]) == before


def test_a_refused_refresh_token_names_what_to_fix(so: Sandboxes) -> None:
    settings = {**oidc(so), "refresh_token": secret("revoked-refresh-token-0123")}
    with pytest.raises(TokenRefused, match=r"invalid_grant.*sign in again"):
        make_connector(so, "superoffice", **settings).check()
    assert requested(so, OIDC) == 1


def test_sold_sales_count_in_a_dutch_tenant_and_an_unknown_status_is_quarantined(so: Sandboxes) -> None:
    """The emulated tenant speaks Dutch: a client that does not ask for English reads "Verkocht"
    and, comparing with "Sold", would count no sale at all."""
    connector = make_connector(so, "superoffice")
    records = {r.id: r for page in connector.read_orders(None) for r in page.records}
    statuses = {r.payload["saleStatus"] for r in records.values()}
    assert statuses == {"Sold", "Lost"}
    assert sum(connector.order_counts(r.payload) for r in records.values()) == 11
    mapper = make_mapper(connector, Kind.ORDER, {"superoffice": connector})
    odd = records["101"].__class__(
        "superoffice",
        Kind.ORDER,
        "101",
        records["101"].updated_at,
        {**records["101"].payload, "saleStatus": "Verkocht"},
    )
    rejected = mapper(odd)
    assert getattr(rejected, "reason", None) == "unknown_sale_status" and "Verkocht" in rejected.message  # type: ignore[union-attr]
    # Held, the sale still says whose it is: an erased person's held sales are not stored either.
    person = mapper(records["101"]).customer_id  # type: ignore[union-attr]
    assert person and rejected.customer_id == person  # type: ignore[union-attr]
    with pytest.raises(RecordProblem):
        connector.order_counts({"saleStatus": "Gewonnen"})
