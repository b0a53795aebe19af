"""Every stored order reaches its profile through the cycle's column path: by the customer record it
names, guests' orders by an email that belongs to one person, orders in another currency converted,
and the rest left out with a reason. The few that are not "plain" are looked up by row number among
millions of plain ones, so they sit between plain orders here."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from mapping.model import Contact, Kind, Order, SourceRecord
from sync.config import load_config
from sync.pipeline import Cycle
from sync.state import StateStore

NOW = datetime(2026, 11, 25, tzinfo=UTC)
CONFIG = """
[state]
url = "sqlite:///crmsync.db"
[segments]
base_currency = "EUR"
rates = { USD = 0.5 }
[systems.shop]
type = "woocommerce"
base_url = "http://127.0.0.1:9"
consumer_key = "ck_test"
consumer_secret = "cs_test"
"""

PEOPLE = {"1": "anna@example.nl", "2": "bram@example.nl", "3": "info@example.nl"}
# order id -> (customer id, email, amount, currency)
ORDERS: dict[str, tuple[str | None, str | None, str, str]] = {
    "o1": ("1", None, "10.00", "EUR"),
    "o2": (None, "anna@example.nl", "20.00", "EUR"),  # a guest order by Anna's address (as mapped)
    "o3": ("2", None, "40.00", "USD"),  # another currency: 20.00 EUR
    "o4": ("1", None, "5.00", ""),  # no currency: the shop's own
    "o5": (None, "info@example.nl", "99.00", "EUR"),  # a role address joins nobody
    "o6": (None, "stranger@example.nl", "7.00", "EUR"),  # nobody crmsync knows
    "o7": ("2", None, "3.00", "JPY"),  # no rate: cannot count
    "o8": ("999", None, "8.00", "EUR"),  # a customer record crmsync does not hold
    "o9": ("2", None, "1.00", "EUR"),
}


def _contact(record: SourceRecord) -> Contact:
    email = record.payload["email"]
    return Contact(record.system, record.id, NOW, email=email, email_role=email.startswith("info@"))


def _order(record: SourceRecord) -> Order:
    customer, email, amount, currency = record.payload["order"]
    created = NOW - timedelta(days=int(record.id[1:]))
    return Order(record.system, record.id, customer, email, Decimal(amount), currency, created)


def test_orders_attach_by_record_by_email_and_convert(tmp_path: Path) -> None:
    (tmp_path / "crmsync.toml").write_text(CONFIG)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    contacts = [SourceRecord("shop", Kind.CONTACT, cid, NOW, {"email": email}) for cid, email in PEOPLE.items()]
    store.store_page("shop", Kind.CONTACT, contacts, _contact, 1)
    orders = [SourceRecord("shop", Kind.ORDER, oid, NOW, {"order": order}) for oid, order in ORDERS.items()]
    store.store_page("shop", Kind.ORDER, orders, _order, 1)

    resolved = Cycle(loaded, store, clock=lambda: NOW)._resolve()

    owner = {key: pid for pid, keys in resolved.members.items() for key in keys}
    columns = resolved.orders
    by_profile: dict[str, list[tuple[int, bool]]] = {}
    nobody: list[tuple[int, bool]] = []
    rows = zip(columns.profile.tolist(), columns.cents.tolist(), columns.counts.tolist(), strict=True)
    for index, cents, counts in rows:
        (nobody if index < 0 else by_profile.setdefault(resolved.profiles[index], [])).append((cents, counts))
    anna, bram, info = owner["shop:1"], owner["shop:2"], owner["shop:3"]
    assert sorted(by_profile[anna]) == [(500, True), (1000, True), (2000, True)]  # o4, o1, guest o2
    assert sorted(by_profile[bram]) == [(0, False), (100, True), (2000, True)]  # o7 (no rate), o9, o3
    assert info not in by_profile  # the role address took no guest order
    assert sorted(nobody) == [(700, False), (800, False), (9900, False)]  # o6, o8, o5
    assert columns.size == len(ORDERS)
