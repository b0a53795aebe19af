"""SuperOffice's declarations (see connectors/vendor.py)."""

from connectors.vendor import Emulated, Vendor

VENDOR = Vendor(
    type="superoffice",
    port_offset=4,
    online=False,
    people_weight=2,
    emulated=Emulated(
        customers=("persons", "PersonId"),
        orders=("sales", "SaleId"),
        rename=lambda name: {"Firstname": name},
        renews_tokens=True,
        creates=("superoffice/interests",),
        fixture_contact={
            "id": "PersonId",
            "email": "Emails.0.Value",
            "phone": "MobilePhones.0.Value",
            "first": "Firstname",
            "last": "Lastname",
        },
        fixture_order={
            "id": "SaleId",
            "amount": "Amount",
            "currency": "Currency.Value",
            "date": "Saledate",
            "customer": "Person",
        },
        typed=True,
    ),
)
