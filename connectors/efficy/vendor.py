"""efficy's declarations (see connectors/vendor.py)."""

from connectors.vendor import Emulated, Vendor

VENDOR = Vendor(
    type="efficy",
    port_offset=5,
    online=False,
    people_weight=1,
    emulated=Emulated(
        customers=("contacts", "K_CONTACT"),
        orders=("opportunities", "K_OPPORTUNITY"),
        rename=lambda name: {"FIRSTNAME": name},
        fixture_contact={"id": "K_CONTACT", "email": "EMAIL1", "phone": "MOBILE", "first": "FIRSTNAME", "last": "NAME"},
        fixture_order={
            "id": "K_OPPORTUNITY",
            "amount": "AMOUNT",
            "currency": "CURRENCY",
            "date": "D_CLOSE",
            "customer": "K_CONTACT",
        },
    ),
)
