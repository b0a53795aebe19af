"""Silvasoft's declarations (see connectors/vendor.py)."""

from connectors.vendor import Emulated, Vendor

VENDOR = Vendor(
    type="silvasoft",
    port_offset=6,
    online=False,
    people_weight=1,
    emulated=Emulated(
        customers=("relations", "CustomerNumber"),
        orders=("invoices", "InvoiceNumber"),
        rename=lambda name: {"Relation_Contact": [{"FirstName": name}]},
        fixture_contact={
            "id": "CustomerNumber",
            "email": "Email",
            "phone": "Phone",
            "first": "Relation_Contact.0.FirstName",
            "last": "Relation_Contact.0.LastName",
        },
        fixture_order={
            "id": "InvoiceNumber",
            "amount": "TotalAmountInclTax",
            "currency": "Currency",
            "date": "InvoiceDate",
            "customer": "CustomerNumber",
            "email": "CustomerEmail",
        },
        dmy_dates=True,
    ),
)
