from connectors.redaction import MASK, redact_text, redact_value, register_secret


def test_registered_secret_is_masked_everywhere_it_appears() -> None:
    register_secret("s3cr3t-token-value")
    text = "failed: token s3cr3t-token-value at https://x/?a=s3cr3t-token-value"
    assert "s3cr3t-token-value" not in redact_text(text)
    assert redact_text(text).count(MASK) == 2


def test_sensitive_query_parameters_are_masked_even_when_unregistered() -> None:
    url = "http://127.0.0.1:9/wp-json/wc/v3/customers?page=2&consumer_secret=cs_abcdef&consumer_key=ck_123456"
    out = redact_text(url)
    assert "cs_abcdef" not in out and "ck_123456" not in out
    assert "page=2" in out  # harmless parameters stay readable


def test_authorization_schemes_are_masked() -> None:
    out = redact_text("sent Authorization: Bearer abcdefghijkl and Basic Y2s6Y3M=")
    assert "abcdefghijkl" not in out and "Y2s6Y3M=" not in out
    # a word after the scheme is prose, and stays readable
    prose = "token refused, or the connector is missing; the Token obtained expires"
    assert redact_text(prose) == prose


def test_nested_values_and_sensitive_keys() -> None:
    register_secret("nested-secret-99")
    event = {"event": "x", "access_token": "whatever", "data": [{"note": "has nested-secret-99 inside"}]}
    out = redact_value(event, by_name=True)
    assert out == {"event": "x", "access_token": MASK, "data": [{"note": f"has {MASK} inside"}]}
    # Documents for people keep harmless `key` fields but still lose the secret values.
    doc = redact_value({"meta_data": [{"key": "crmsync_segments", "value": "nested-secret-99"}]}, by_name=False)
    assert doc == {"meta_data": [{"key": "crmsync_segments", "value": MASK}]}


def test_short_values_are_not_registered() -> None:
    register_secret("ab")
    assert redact_text("abc ab") == "abc ab"


def test_the_password_of_a_url_is_masked_even_when_unregistered() -> None:
    text = "InvalidURL: Failed to parse: https://u:TOKpw_81@example.com:99999/admin and postgresql+psycopg://crm:pg_pw@h/db"
    masked = redact_text(text)
    assert "TOKpw_81" not in masked and "pg_pw" not in masked
    assert "https://u:***@example.com:99999/admin" in masked and "postgresql+psycopg://crm:***@h/db" in masked
    # Not a URL's user part: left as written.
    for plain in ("mailto:klant@example.nl", "https://example.com/a:b@c", "om 10:30 bij x@y.nl", "http://host:8080/x"):
        assert redact_text(plain) == plain
