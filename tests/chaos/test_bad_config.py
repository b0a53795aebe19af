"""The bad config corpus: broken configs, one mistake each, every one refused by `crmsync check`
before anything runs, with exit 2 and exactly one line naming the key as the TOML writes it; never a
traceback, never a secret (every config carries credentials, registered for the session's scan)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.chaos import report
from tests.kit import run_crmsync, run_crmsync_here, secret

TOKEN = secret("shpat_bad_config_corpus_token_5e6f7a")
CK = secret("ck_bad_config_corpus_key_8b9c0d")
CS = secret("cs_bad_config_corpus_secret_1e2f3a")
AFAS = secret("AFAS0BADCONFIGCORPUSTOKEN9F8E7D6C5B4A")
SO_TOKEN = secret("8A:Cust1.bad-config-corpus-access-4d3c")
SO_APP = secret("bad-config-corpus-application-secret-2b1a")
EFFICY = secret("EFFICY0BADCONFIGCORPUSKEY77AA")
LS_KEY = secret("ls-bad-config-corpus-key-0a1b2c3d")
LS_SECRET = secret("ls-bad-config-corpus-secret-4e5f6a7b")
SILVA = secret("silvasoft-bad-config-corpus-key-9c8d")

SHOP = f'[systems.shop]\ntype = "shopify"\nbase_url = "https://winkel.myshopify.com"\naccess_token = "{TOKEN}"\n'
WEB = (
    '[systems.web]\ntype = "woocommerce"\nbase_url = "https://winkel.example.nl"\n'
    f'consumer_key = "{CK}"\nconsumer_secret = "{CS}"\n'
)
ERP = f'[systems.erp]\ntype = "afas"\nbase_url = "https://12345.rest.afas.online"\ntoken = "{AFAS}"\n'
CRM = (
    '[systems.crm]\ntype = "superoffice"\nbase_url = "https://online.superoffice.com"\ntenant = "Cust1"\n'
    f'access_token = "{SO_TOKEN}"\napp_token = "{SO_APP}"\nsegments_field = "SuperOffice:8"\n'
)
REL = (
    '[systems.rel]\ntype = "efficy"\nbase_url = "https://firma.efficy.cloud"\n'
    f'api_key = "{EFFICY}"\ncontacts_query = 10001\n'
)
LS = (
    '[systems.ls]\ntype = "lightspeed"\nbase_url = "https://api.webshopapp.com"\n'
    f'api_key = "{LS_KEY}"\napi_secret = "{LS_SECRET}"\n'
)
BOOKS = (
    '[systems.books]\ntype = "silvasoft"\nbase_url = "https://rest-api.silvasoft.nl"\n'
    f'api_key = "{SILVA}"\nusername = "api@firma.nl"\n'
)


class Broken(NamedTuple):
    text: str
    key: str  # the key path the one line must name
    env: dict[str, str] | None = None


def sub(section: str, old: str, new: str) -> str:
    assert old in section, old
    return section.replace(old, new)


CASES: dict[str, Broken] = {
    "state url scheme": Broken('[state]\nurl = "mysql://db/crmsync"\n' + SHOP, "state.url"),
    "state url type": Broken("[state]\nurl = 5\n" + SHOP, "state.url"),
    "interval words": Broken('[schedule]\ninterval = "soon"\n' + SHOP, "schedule.interval"),
    "interval too short": Broken('[schedule]\ninterval = "500ms"\n' + SHOP, "schedule.interval"),
    "interval and cron": Broken('[schedule]\ninterval = "5m"\ncron = "*/5 * * * *"\n' + SHOP, "schedule"),
    "cron three fields": Broken('[schedule]\ncron = "* * *"\n' + SHOP, "schedule.cron"),
    "tag prefix too short": Broken('[writeback]\ntag_prefix = "x"\n' + SHOP, "writeback.tag_prefix"),
    "tag prefix comma": Broken('[writeback]\ntag_prefix = "crm,sync:"\n' + SHOP, "writeback.tag_prefix"),
    "unknown section": Broken("[shedule]\ninterval = '5m'\n" + SHOP, "shedule"),
    "system name upper case": Broken(SHOP.replace("[systems.shop]", "[systems.Shop]"), "systems"),
    "type missing": Broken(sub(SHOP, 'type = "shopify"\n', ""), "systems.shop.type"),
    "type unknown": Broken(sub(SHOP, '"shopify"', '"magento"'), "systems.shop.type"),
    "access token missing": Broken(sub(SHOP, f'access_token = "{TOKEN}"\n', ""), "systems.shop.access_token"),
    "plain http": Broken(sub(SHOP, "https://winkel", "http://winkel"), "systems.shop.base_url"),
    "ftp url": Broken(sub(SHOP, "https://winkel", "ftp://winkel"), "systems.shop.base_url"),
    "api version": Broken(SHOP + 'api_version = "2026-13"\n', "systems.shop.api_version"),
    "page size over the maximum": Broken(SHOP + "page_size = 1000\n", "systems.shop.page_size"),
    "rate limit a word": Broken(SHOP + 'rate_limit = "fast"\n', "systems.shop.rate_limit"),
    "rate limit zero requests": Broken(
        SHOP + "rate_limit = [{ requests = 0, per_seconds = 1 }]\n", "systems.shop.rate_limit[0].requests"
    ),
    "retry attempts zero": Broken(SHOP + "retry = { attempts = 0 }\n", "systems.shop.retry.attempts"),
    "negative lookback": Broken(SHOP + 'lookback = "-5m"\n', "systems.shop.lookback"),
    "reconcile every a word": Broken(SHOP + 'reconcile_every = "sometimes"\n', "systems.shop.reconcile_every"),
    "a typo in a key": Broken(SHOP + "pagesize = 50\n", "systems.shop.pagesize"),
    "skip segment name": Broken(SHOP + 'skip_segments = ["Friends!"]\n', "systems.shop.skip_segments"),
    "field override unknown field": Broken(SHOP + 'fields = { shoe_size = "x" }\n', "systems.shop.fields"),
    "field override normaliser": Broken(
        SHOP + 'fields = { email = { path = "x", normaliser = "magic" } }\n', "systems.shop.fields.email.normaliser"
    ),
    "link to nothing": Broken(WEB + 'links = { erp = "meta.erp_id" }\n', "systems.web.links.erp"),
    "woo auth": Broken(WEB + 'auth = "header"\n', "systems.web.auth"),
    "woo secret missing": Broken(sub(WEB, f'consumer_secret = "{CS}"\n', ""), "systems.web.consumer_secret"),
    "afas token missing": Broken(sub(ERP, f'token = "{AFAS}"\n', ""), "systems.erp.token"),
    "afas connector name": Broken(ERP + 'contacts_connector = "Persons; DROP"\n', "systems.erp.contacts_connector"),
    "superoffice tenant": Broken(sub(CRM, '"Cust1"', '"Cust 1"'), "systems.crm.tenant"),
    "superoffice same field twice": Broken(CRM + 'tier_field = "SuperOffice:8"\n', "systems.crm"),
    "efficy query missing": Broken(sub(REL, "contacts_query = 10001\n", ""), "systems.rel.contacts_query"),
    "efficy field": Broken(REL + 'segments_field = "CONT$X.bad field"\n', "systems.rel.segments_field"),
    "lightspeed language": Broken(LS + 'language = "dutch"\n', "systems.ls.language"),
    "silvasoft username missing": Broken(sub(BOOKS, 'username = "api@firma.nl"\n', ""), "systems.books.username"),
    "silvasoft wait zero": Broken(BOOKS + "ratelimit_wait = 0\n", "systems.books.ratelimit_wait"),
    "source priority": Broken('[identity]\nsource_priority = ["webshop"]\n' + SHOP, "identity.source_priority[0]"),
    "default country": Broken('[identity]\ndefault_country = "Holland"\n' + SHOP, "identity.default_country"),
    "rule expression": Broken(
        '[[segments.rules]]\nname = "big"\nwhen = "revenue >> 5"\n' + SHOP, "segments.rules[0].when"
    ),
    "rule name": Broken(
        '[[segments.rules]]\nname = "Big Spenders"\nwhen = "revenue > 5"\n' + SHOP, "segments.rules[0].name"
    ),
    "negative tier": Broken(
        '[[segments.tiers]]\nname = "bronze"\nmin_spend_12m = -1\n' + SHOP, "segments.tiers[0].min_spend_12m"
    ),
    "base currency": Broken('[segments]\nbase_currency = "euro"\n' + SHOP, "segments.base_currency"),
    "interval from the environment": Broken(SHOP, "schedule.interval", {"CRMSYNC_SCHEDULE__INTERVAL": "never"}),
    "bad key beside a token from the environment": Broken(
        sub(SHOP, f'access_token = "{TOKEN}"\n', "") + "page_size = 0\n",
        "systems.shop.page_size",
        {"CRMSYNC_SYSTEMS__SHOP__ACCESS_TOKEN": TOKEN},
    ),
}
SECRETS = (TOKEN, CK, CS, AFAS, SO_TOKEN, SO_APP, EFFICY, LS_KEY, LS_SECRET, SILVA)


# These also run as real subprocesses: the in-process runs below go through the same entry point.
AS_SUBPROCESS = ("type unknown", "rate limit zero requests", "rule expression", "interval from the environment")


def _write(folder: Path, name: str) -> Path:
    path = folder / (name.replace(" ", "-") + ".toml")
    path.write_text(CASES[name].text)
    return path


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    """Every case through `crmsync check`, run by `sync.cli.main` in this process (a subprocess
    costs a second of start-up each)."""
    folder = tmp_path_factory.mktemp("bad-config")
    found = {}
    for name in CASES:
        result = run_crmsync_here("check", "-c", str(_write(folder, name)), env=CASES[name].env)
        found[name] = (result.returncode, result.stdout, result.stderr)
    good = sum(1 for name, (code, out, err) in found.items() if code == 2 and _one_line(err, CASES[name].key))
    report.record("bad_config", {"cases": len(CASES), "refused": good})
    return found


def _one_line(stderr: str, key: str) -> bool:
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(f"config error: {key}: ")


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_broken_config_is_one_line_naming_the_key_and_exit_2(
    name: str, refusals: dict[str, tuple[int, str, str]], tmp_path: Path
) -> None:
    code, out, err = refusals[name]
    assert code == 2, err
    assert out == ""
    assert _one_line(err, CASES[name].key), err
    assert "Traceback" not in err
    assert not any(value in err for value in SECRETS)


def test_the_command_itself_refuses_them_the_same_way(
    refusals: dict[str, tuple[int, str, str]], tmp_path: Path
) -> None:
    def run(name: str) -> tuple[int, str, str]:
        result = run_crmsync("check", "-c", str(_write(tmp_path, name)), env=CASES[name].env)
        return result.returncode, result.stdout, result.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, seen in zip(AS_SUBPROCESS, pool.map(run, AS_SUBPROCESS), strict=True):
            assert seen == refusals[name], name
