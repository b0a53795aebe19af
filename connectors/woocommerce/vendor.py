"""WooCommerce's declarations (see connectors/vendor.py)."""

from connectors.vendor import Emulated, Vendor

VENDOR = Vendor(
    type="woocommerce",
    port_offset=1,
    online=True,
    people_weight=3,
    shop_id_base=1000,
    emulated=Emulated(
        customers=("customers", "id"),
        orders=("orders", "id"),
        rename=lambda name: {"first_name": name},
        fixture_contact={
            "id": "id",
            "email": "email",
            "phone": "billing.phone",
            "first": "first_name",
            "last": "last_name",
            "address": "billing",
        },
        fixture_order={
            "id": "id",
            "amount": "total",
            "currency": "currency",
            "date": "date_created_gmt",
            "customer": "customer_id",
            "email": "billing.email",
        },
        numeric_amounts=False,
    ),
)
