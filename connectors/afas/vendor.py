"""AFAS Profit's declarations (see connectors/vendor.py)."""

from connectors.vendor import Emulated, Vendor

VENDOR = Vendor(
    type="afas",
    port_offset=3,
    online=False,
    people_weight=2,
    emulated=Emulated(
        customers=("persons.rows", "PersonId"),
        orders=("invoices.rows", "InvoiceId"),
        rename=lambda name: {"FirstName": name},
        fixture_contact={
            "id": "PersonId",
            "email": "Email",
            "phone": "Mobile",
            "first": "FirstName",
            "last": "LastName",
        },
        fixture_order={
            "id": "InvoiceId",
            "amount": "AmountInclVat",
            "currency": "Currency",
            "date": "InvoiceDate",
            "customer": "PersonId",
        },
    ),
)
