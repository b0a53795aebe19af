import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.settings import parse_duration
from sync.config import ConfigError, load_config

GOOD = """
[state]
url = "sqlite:///state/crmsync.db"
[schedule]
interval = "15m"
[writeback]
tag_prefix = "crmsync:"
[segments.quadrant]
high_value_min_revenue = 300
[systems.shop]
type = "shopify"
base_url = "https://example.myshopify.com"
access_token = "shpat_config_secret_1"
rate_limit = [{ requests = 2, per_seconds = 1 }, { requests = 50, per_seconds = 60 }]
[systems.web]
type = "woocommerce"
base_url = "https://winkel.example.nl"
consumer_key = "ck_config_key_1"
consumer_secret = "cs_config_secret_1"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crmsync.toml"
    path.write_text(text)
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    return caught.value.problems


def test_good_config_loads_with_secrets_hidden(tmp_path: Path) -> None:
    loaded = load_config(_write(tmp_path, GOOD))
    shop = loaded.config.systems["shop"]
    assert shop.type == "shopify"
    assert [w.requests for w in shop.rate_limit] == [2, 50]
    assert "shpat_config_secret_1" not in repr(loaded.config)
    assert loaded.config.schedule.every_seconds == 900
    assert str(loaded.config.segments.quadrant.high_value_min_revenue) == "300"
    # relative SQLite paths resolve from the config file's folder, not the working directory
    assert loaded.state_url() == f"sqlite:///{tmp_path.resolve()}/state/crmsync.db"


def test_environment_overrides_nested_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_SYSTEMS__SHOP__ACCESS_TOKEN", "shpat_from_env")
    monkeypatch.setenv("CRMSYNC_WRITEBACK__TAG_PREFIX", "cs:")
    loaded = load_config(_write(tmp_path, GOOD))
    assert loaded.config.systems["shop"].access_token.get_secret_value() == "shpat_from_env"  # type: ignore[attr-defined]
    assert loaded.config.systems["shop"].base_url == "https://example.myshopify.com"  # the rest stays
    assert loaded.config.writeback.tag_prefix == "cs:"


def test_environment_can_supply_a_missing_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_SYSTEMS__SHOP__ACCESS_TOKEN", "shpat_only_in_env")
    loaded = load_config(_write(tmp_path, GOOD.replace('access_token = "shpat_config_secret_1"\n', "")))
    assert loaded.config.systems["shop"].access_token.get_secret_value() == "shpat_only_in_env"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('access_token = "shpat_config_secret_1"\n', ""), "config error: systems.shop.access_token: field required"),
        (('type = "shopify"', 'type = "magento"'), "config error: systems.shop.type: unknown system type"),
        (("requests = 2,", "requests = 0,"), "config error: systems.shop.rate_limit[0].requests: "),
        (('interval = "15m"', 'interval = "soon"'), "config error: schedule.interval: expected a duration"),
        (("https://winkel.example.nl", "http://winkel.example.nl"), "config error: systems.web.base_url: plain http"),
        (("[systems.web]", "[systems.Web]"), "config error: systems: system name 'Web' must match"),
        (
            ("[systems.web]", f"[systems.{'w' * 65}]"),
            "config error: systems: system name 'wwwwwwwwwwwwwwwwwwww'... has 65",
        ),
        (('consumer_key = "ck_config_key_1"', "consumer_key = 12"), "config error: systems.web.consumer_key: input"),
        (("tag_prefix", "tag_prefixx"), "config error: writeback.tag_prefixx: unknown key"),
        (
            ('consumer_key = "ck', 'links = { crm = "meta_data.0.value" }\nconsumer_key = "ck'),
            "config error: systems.web.links.crm: links name another configured system",
        ),
    ],
)
def test_each_problem_is_one_plain_line_naming_the_key(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    problems = _problems(tmp_path, GOOD.replace(*change))
    assert any(line.startswith(expected) for line in problems), problems
    for line in problems:
        assert "\n" not in line and "Traceback" not in line
        assert "shopify]" not in line and "woocommerce]" not in line  # no pydantic union tags
        for secret in ("shpat_config_secret_1", "ck_config_key_1", "cs_config_secret_1"):
            assert secret not in line


def test_secret_in_a_wrongly_typed_field_is_not_echoed(tmp_path: Path) -> None:
    text = GOOD.replace('access_token = "shpat_config_secret_1"', 'access_token = ["shpat_in_a_list_9"]')
    problems = _problems(tmp_path, text)
    assert problems and all("shpat_in_a_list_9" not in line for line in problems)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:TOKSECRET_77@example.com", "must not carry a user or password"),
        ("https://example.com:99999", "port that is not a number from 1 to 65535"),
        ("https://example.com:abc", "port that is not a number from 1 to 65535"),
        ("https://example.com:0", "port that is not a number from 1 to 65535"),
        ("https://exa mple.com", "is not a URL an HTTP client can send to"),
    ],
)
def test_a_base_url_no_request_could_use_is_a_config_error_that_never_repeats_it(
    tmp_path: Path, url: str, expected: str
) -> None:
    """Found when the config is read, not by the first request (which crashed with exit 70 and put
    the URL, password and all, in its message and crash log)."""
    problems = _problems(tmp_path, GOOD.replace("https://example.myshopify.com", url))
    assert [line for line in problems if line.startswith("config error: systems.shop.base_url: ")] == [
        f"config error: systems.shop.base_url: {line.split(': ', 2)[2]}" for line in problems
    ]
    assert expected in problems[0] and "TOKSECRET_77" not in problems[0] and url not in problems[0]


def test_a_state_url_with_a_port_no_connection_could_use_is_a_config_error(tmp_path: Path) -> None:
    text = GOOD.replace("sqlite:///state/crmsync.db", "postgresql+psycopg://crm:pw_secret_5@127.0.0.1:abc/db")
    problems = _problems(tmp_path, text)
    assert problems == ["config error: state.url: the port is not a number from 1 to 65535"]


def test_an_environment_override_that_cannot_be_read_names_its_variable_not_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMSYNC_SYSTEMS__SHOP__RATE_LIMIT", "oops_value_3")
    [line] = _problems(tmp_path, GOOD)
    assert line.startswith("config error: environment: one of CRMSYNC_SYSTEMS__SHOP__RATE_LIMIT cannot be read")
    assert "oops_value_3" not in line


def test_every_missing_credential_of_a_sign_in_is_its_own_line(tmp_path: Path) -> None:
    crm = '[systems.crm]\ntype = "superoffice"\nbase_url = "https://sod.superoffice.com"\ntenant = "Cust1"\n'
    crm += 'auth = "oidc"\nclient_id = "c"\nsegments_as = "interests"\n'
    problems = _problems(tmp_path, GOOD + crm)
    assert problems == [
        "config error: systems.crm.client_secret: field required (auth = 'oidc')",
        "config error: systems.crm.refresh_token: field required (auth = 'oidc')",
    ]
    shop = GOOD.replace('access_token = "shpat_config_secret_1"', 'refresh_token = "shprt_config_secret_2"')
    assert [line.split(" (")[0] for line in _problems(tmp_path, shop)] == [
        "config error: systems.shop.client_id: field required",
        "config error: systems.shop.client_secret: field required",
        "config error: systems.shop.refresh_token_file: field required",
    ]


def test_a_private_key_that_cannot_sign_is_a_config_error(tmp_path: Path) -> None:
    crm = '[systems.crm]\ntype = "superoffice"\nbase_url = "https://sod.superoffice.com"\ntenant = "Cust1"\n'
    crm += 'auth = "system_user"\napp_token = "app_token_1"\nsystem_user_token = "sut_1"\n'
    crm += 'private_key = "-----BEGIN nonsense_key_9-----"\nsegments_as = "interests"\n'
    [line] = _problems(tmp_path, GOOD + crm)
    assert line.startswith("config error: systems.crm.private_key: is not a usable RSA private key")
    assert "nonsense_key_9" not in line


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "nope.toml")
    assert missing.value.problems == [f"config error: {tmp_path / 'nope.toml'}: file not found"]
    assert "invalid TOML" in _problems(tmp_path, "[state\nurl=1")[0]


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("2d", 172800.0), ("500ms", 0.5), ("1.5m", 90.0)],
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["15 minutes", "-5s", True, "", None])
def test_bad_durations(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(raw)


def test_the_example_config_documents_every_system_type_and_is_valid_once_filled_in(tmp_path: Path) -> None:
    from connectors.registry import TYPES

    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    # As shipped, every value a person must fill in is a config error naming its key.
    with pytest.raises(ConfigError) as caught:
        load_config(example)
    assert "config error: systems.shop.client_secret: not filled in" in caught.value.problems
    assert all(line.endswith(": not filled in") for line in caught.value.problems)
    numbers = iter(range(1, 1000))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    text = example.read_text().replace('private_key = "REPLACE_ME"', f'private_key = """{key.decode()}"""')
    assert "BEGIN PRIVATE KEY" in text  # a key is read when the config is: a word will not do
    text = re.sub("REPLACE_ME", lambda _: f"filled-in-{next(numbers)}", text)
    filled = _write(tmp_path, text)
    loaded = load_config(filled)
    assert {s.type for s in loaded.config.systems.values()} == set(TYPES)
    assert str(loaded.config.segments.rates["USD"]) == "0.92"


def test_a_placeholder_is_not_filled_in_unless_the_environment_fills_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = GOOD.replace('access_token = "shpat_config_secret_1"', 'access_token = "replace_me"')
    assert _problems(tmp_path, text) == ["config error: systems.shop.access_token: not filled in"]
    monkeypatch.setenv("CRMSYNC_SYSTEMS__SHOP__ACCESS_TOKEN", "shpat_from_the_environment")
    assert load_config(_write(tmp_path, text)).config.systems["shop"].type == "shopify"
    monkeypatch.setenv("CRMSYNC_SYSTEMS__WEB__CONSUMER_KEY", "REPLACE_ME")
    assert _problems(tmp_path, text) == ["config error: systems.web.consumer_key: not filled in"]
