"""Lightspeed eCom's declarations (see connectors/vendor.py)."""

from connectors.vendor import Emulated, Vendor

VENDOR = Vendor(
    type="lightspeed",
    port_offset=2,
    online=True,
    people_weight=2,
    shop_id_base=2_000_000,
    emulated=Emulated(
        customers=("customers", "id"),
        orders=("orders", "id"),
        rename=lambda name: {"firstname": name},
        creates=("lightspeed",),
        fixture_contact={"id": "id", "email": "email", "phone": "phone", "first": "firstname", "last": "lastname"},
        fixture_order={
            "id": "id",
            "amount": "priceIncl",
            "currency": "currency",
            "date": "createdAt",
            "customer": "customer",
            "email": "email",
        },
    ),
)
