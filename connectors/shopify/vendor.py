"""Shopify's declarations (see connectors/vendor.py)."""

from connectors.vendor import Emulated, Vendor

VENDOR = Vendor(
    type="shopify",
    port_offset=0,
    online=True,
    people_weight=4,
    shop_id_base=7_000_000,
    emulated=Emulated(
        customers=("customers", "id"),
        orders=("orders", "id"),
        rename=lambda name: {"firstName": name},
        renews_tokens=True,
        fixture_contact={
            "id": "id",
            "email": "defaultEmailAddress.emailAddress",
            "phone": "defaultPhoneNumber.phoneNumber",
            "first": "firstName",
            "last": "lastName",
            "address": "defaultAddress",
        },
        fixture_order={
            "id": "id",
            "amount": "totalPriceSet.shopMoney.amount",
            "currency": "totalPriceSet.shopMoney.currencyCode",
            "date": "createdAt",
            "customer": "customer",
            "email": "email",
        },
        typed=True,
        numeric_amounts=False,
    ),
)
