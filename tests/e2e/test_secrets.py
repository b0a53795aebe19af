"""A known token must never show up in logs, errors, `--json` output or the state database, even
when the test forces it into a URL, an exception message and a log event's fields."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import structlog

from connectors.redaction import register_secret
from sync.log import setup_logging
from tests.kit import Sandboxes, run_crmsync, secret

SHOP_TOKEN = secret("shpat_known_secret_for_tests_1a2b3c")
WOO_KEY = secret("ck_known_key_for_tests_4d5e6f")
WOO_SECRET = secret("cs_known_secret_for_tests_7a8b9c")
SECRETS = (SHOP_TOKEN, WOO_KEY, WOO_SECRET)


def test_logger_redacts_urls_exception_messages_and_fields() -> None:
    register_secret(SHOP_TOKEN)
    for as_json in (True, False):
        out = io.StringIO()
        setup_logging("debug", as_json, stream=out)
        log = structlog.get_logger("test")
        log.debug("request", url=f"https://x.myshopify.com/graphql.json?access_token={SHOP_TOKEN}&page=2")
        log.info("fields", token=SHOP_TOKEN, headers={"X-Shopify-Access-Token": SHOP_TOKEN}, note=f"t={SHOP_TOKEN}")
        try:
            raise RuntimeError(f"vendor echoed the token {SHOP_TOKEN} back")
        except RuntimeError:
            log.exception("failure")
        log.info(f"an event name that mentions {SHOP_TOKEN}")
        text = out.getvalue()
        assert SHOP_TOKEN not in text
        assert "vendor echoed the token" in text and "page=2" in text  # still readable


def test_the_token_never_leaves_crmsync(sandboxes: Sandboxes, tmp_path: Path) -> None:
    for app, settings in (
        # the Dev Dashboard app's client secret; the tokens it buys carry the emulator's mark, which
        # the session's secrets scan looks for in everything crmsync printed or stored
        (sandboxes.app("shopify"), {"client_secret": SHOP_TOKEN}),
        (sandboxes.app("woocommerce"), {"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET}),
    ):
        for name, value in settings.items():
            setattr(app, name, value)
    config = sandboxes.config(
        tmp_path,
        shopify=f'client_secret = "{SHOP_TOKEN}"',
        # keys in the query string: every WooCommerce URL carries them
        woocommerce=f'consumer_key = "{WOO_KEY}"\nconsumer_secret = "{WOO_SECRET}"\nauth = "query"',
    )
    # a third system nobody answers for: the refused connection's message carries the whole URL
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config.write_text(
        config.read_text()
        + f"""
[systems.closed]
type = "woocommerce"
base_url = "http://127.0.0.1:{closed_port}"
consumer_key = "{WOO_KEY}"
consumer_secret = "{WOO_SECRET}"
auth = "query"
retry = {{ attempts = 2, backoff_initial = 0.01 }}
"""
    )
    assert WOO_SECRET in config.read_text() and 'auth = "query"' in config.read_text()
    # connection drops put the full URL, query included, into the HTTP library's exception text
    sandboxes.fault("woocommerce", match="reads", fault="reset", times=2)
    sandboxes.fault("shopify", match="reads", fault="500", times=1)
    outputs = []
    for args in (
        ("sync", "--log-level", "debug", "--json"),
        ("sync", "--log-level", "debug", "--log-json"),
        ("check", "--json"),
        ("status", "--json"),
        ("plan", "--json", "--log-level", "debug"),
    ):
        result = run_crmsync(*args, "-c", str(config))
        outputs.append(result.stdout + result.stderr)
    # and a run that fails for good, with the secrets in the error path
    sandboxes.fault("woocommerce", match="reads", fault="reset", times=50)
    failing = run_crmsync("sync", "--log-level", "debug", "-c", str(config))
    assert failing.returncode == 3  # the closed system fails every time
    outputs.append(failing.stdout + failing.stderr)
    everything = "\n".join(outputs)
    for value in SECRETS:
        assert value not in everything
    state = (tmp_path / "crmsync.db").read_bytes()
    for value in SECRETS:
        assert value.encode() not in state
    doc = json.loads(outputs[0].split("\n")[0])
    assert doc["systems"]["woocommerce"]["status"] == "ok"  # the reset was survived
    assert doc["systems"]["closed"]["status"] == "failed"
    assert "Connection refused" in doc["systems"]["closed"]["error"]
