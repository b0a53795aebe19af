"""A minimal web shop, to prove a vendor is added by its folder alone (nothing outside it edited)."""

from connectors.vendor import Emulated, Vendor

VENDOR = Vendor(
    type="acme",
    port_offset=7,
    online=True,
    shop_id_base=5_000_000,
    emulated=Emulated(
        customers=("customers.records", "id"),
        orders=("orders.records", "id"),
        rename=lambda name: {"first_name": name},
    ),
)
