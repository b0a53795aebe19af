"""The new profile fields from each vendor's own record shape (issue 18 item 1), mapped by the
connector's declared field map (and, for the systems whose lists the administrator builds, the
`fields` lines the setup guides give), then turned into bases by hand-checked rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mapping.bases import BaseSettings, OrderDetails, PersonFields, b2b_reason, base_columns
from mapping.model import Contact, Kind, Order, SourceRecord
from mapping.regions import region_of
from sync.mapper import make_mapper
from tests.kit import Sandboxes, make_connector

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def mapped(connector: Any, kind: Kind, payload: dict[str, Any], record_id: str = "1") -> Contact | Order:
    result = make_mapper(connector, kind, {connector.name: connector})(
        SourceRecord(connector.name, kind, record_id, NOW, payload)
    )
    assert isinstance(result, Contact | Order), result
    return result


def test_shopify_consent_company_discounts_lines_and_checkouts(sandboxes: Sandboxes) -> None:
    shop = make_connector(sandboxes, "shopify")
    customer = mapped(
        shop,
        Kind.CONTACT,
        {
            "id": "gid://shopify/Customer/1",
            "firstName": "Jan",
            "lastName": "Jansen",
            "defaultEmailAddress": {"emailAddress": "jan@jansen-bouw.nl", "marketingState": "SUBSCRIBED"},
            "defaultPhoneNumber": None,
            "defaultAddress": {
                "address1": "Dam 1",
                "zip": "1012 JS",
                "city": "Amsterdam",
                "countryCodeV2": "NL",
                "company": "Jansen Bouw",
            },
            "tags": [],
        },
    )
    assert isinstance(customer, Contact)
    assert (customer.email_consent, customer.company) == (True, "Jansen Bouw")
    assert region_of(customer.country, customer.postcode) == "NL-NH"
    assert b2b_reason(business=None, kvk=None, vat=None, company=customer.company, email=customer.email)

    unsubscribed = mapped(
        shop,
        Kind.CONTACT,
        {
            "id": "gid://shopify/Customer/2",
            "tags": [],
            "defaultEmailAddress": {"emailAddress": "a@b.nl", "marketingState": "UNSUBSCRIBED"},
        },
    )
    assert isinstance(unsubscribed, Contact) and unsubscribed.email_consent is False

    base = {
        "createdAt": "2026-05-01T10:00:00Z",
        "updatedAt": "2026-05-01T10:00:00Z",
        "currentTotalPriceSet": {"shopMoney": {"amount": "50.00", "currencyCode": "EUR"}},
        "customer": {"id": "gid://shopify/Customer/1"},
    }
    order = mapped(
        shop,
        Kind.ORDER,
        {
            **base,
            "id": "gid://shopify/Order/1",
            "email": "jan@jansen-bouw.nl",
            "cancelledAt": None,
            "test": False,
            "displayFinancialStatus": "PAID",
            "discountCodes": ["SPRING10"],
            "lineItems": {
                "nodes": [
                    {"product": {"productType": "Shoes"}},
                    {"product": None},
                    {"product": {"productType": "Bags"}},
                ]
            },
        },
    )
    assert isinstance(order, Order)
    assert (order.discount, order.categories, order.unfinished, order.counts) == (True, ("Shoes", "Bags"), False, True)

    checkout = mapped(
        shop, Kind.ORDER, {**base, "id": "gid://shopify/AbandonedCheckout/7", "completedAt": None, "discountCodes": []}
    )
    completed = mapped(
        shop,
        Kind.ORDER,
        {**base, "id": "gid://shopify/AbandonedCheckout/8", "completedAt": "2026-05-01T11:00:00Z", "discountCodes": []},
    )
    assert isinstance(checkout, Order) and isinstance(completed, Order)
    assert (checkout.unfinished, checkout.counts) == (True, False)
    assert (completed.unfinished, completed.counts) == (False, False)  # it is an order of its own now


def test_woocommerce_coupons_and_unfinished_statuses(sandboxes: Sandboxes) -> None:
    woo = make_connector(sandboxes, "woocommerce")
    order: dict[str, Any] = {
        "total": "30.00",
        "currency": "EUR",
        "customer_id": 5,
        "billing": {"email": "a@b.nl"},
        "date_created_gmt": "2026-05-01T10:00:00",
        "coupon_lines": [{"id": 1, "code": "welkom", "discount": "3.00"}],
    }
    statuses = {
        s: mapped(woo, Kind.ORDER, {**order, "status": s}) for s in ("completed", "pending", "failed", "checkout-draft")
    }
    assert [(o.counts, o.unfinished) for o in statuses.values() if isinstance(o, Order)] == [
        (True, False),
        (False, True),
        (False, True),
        (False, False),
    ]
    # Cancelled unpaid after the hold-stock time: an abandoned checkout; cancelled after paying, or
    # an order an admin made and cancelled, is not.
    cancelled = {**order, "status": "cancelled", "date_paid": None, "date_paid_gmt": None}
    abandoned = mapped(woo, Kind.ORDER, {**cancelled, "created_via": "checkout"})
    refunded = mapped(woo, Kind.ORDER, {**cancelled, "created_via": "checkout", "date_paid": "2026-05-01T10:05:00"})
    by_admin = mapped(woo, Kind.ORDER, {**cancelled, "created_via": "admin"})
    transfer = mapped(woo, Kind.ORDER, {**cancelled, "created_via": "checkout", "payment_method": "bacs"})
    outcomes = [o.unfinished for o in (abandoned, refunded, by_admin, transfer) if isinstance(o, Order)]
    assert outcomes == [True, False, False, False]
    plain = mapped(woo, Kind.ORDER, {**order, "status": "completed", "coupon_lines": []})
    assert isinstance(plain, Order) and plain.discount is False and statuses["completed"].discount is True  # type: ignore[union-attr]


def test_lightspeed_birth_date_company_numbers_and_coupon(sandboxes: Sandboxes) -> None:
    shop = make_connector(sandboxes, "lightspeed")
    company = mapped(
        shop,
        Kind.CONTACT,
        {
            "email": "inkoop@degroot.nl",
            "firstname": "Els",
            "lastname": "de Groot",
            "birthDate": "1980-02-29",
            "isCompany": True,
            "companyCoCNumber": "12345678",
            "companyVatNumber": "NL123456789B01",
        },
    )
    person = mapped(
        shop,
        Kind.CONTACT,
        {
            "email": "els@gmail.com",
            "birthDate": False,
            "isCompany": False,
            "companyCoCNumber": "",
            "companyVatNumber": "",
        },
    )
    assert isinstance(company, Contact) and isinstance(person, Contact)
    assert (company.birth_date, company.business, company.kvk, company.vat) == (
        "1980-02-29",
        True,
        "12345678",
        "NL123456789B01",
    )
    assert (person.birth_date, person.business, person.kvk, person.vat) == (None, False, None, None)
    coupon = mapped(
        shop,
        Kind.ORDER,
        {
            "customer": {"resource": {"id": 1}},
            "priceIncl": 20,
            "currency": "EUR",
            "createdAt": "2026-05-01T10:00:00+02:00",
            "discountCouponCode": "ZOMER",
        },
    )
    none = mapped(
        shop,
        Kind.ORDER,
        {
            "customer": {"resource": {"id": 1}},
            "priceIncl": 20,
            "currency": "EUR",
            "createdAt": "2026-05-01T10:00:00+02:00",
            "discountCouponCode": False,
        },
    )
    assert isinstance(coupon, Order) and isinstance(none, Order) and (coupon.discount, none.discount) == (True, False)

    fields = PersonFields(
        email=[company.email, person.email],
        company=[None, None],
        postcode=[None, None],
        country=[None, None],
        birth_date=[company.birth_date, person.birth_date],
        kvk=[company.kvk, person.kvk],
        vat=[company.vat, person.vat],
        business=[company.business, person.business],
        email_consent=[None, None],
    )
    bases = base_columns(fields, OrderDetails.empty(), 2, NOW, BaseSettings())
    assert bases.b2b.tolist() == [True, False]
    assert bases.age[0] == 46 and str(bases.age_band[0]) == "45-54"  # 29 Feb 1980 to 1 Jun 2026


def test_afas_fields_from_the_columns_the_setup_guide_adds(sandboxes: Sandboxes) -> None:
    # Profit's GetConnectors are built by the administrator: these columns are opt-in, mapped by
    # the `fields` lines of docs/setup/afas.md.
    afas = make_connector(
        sandboxes,
        "afas",
        fields={
            "postcode": "ZipCode",
            "country": {"path": "CountryId", "normaliser": "country"},
            "company": "OrganisationName",
            "business": {"path": "OrganisationId", "normaliser": "flag"},
            "birth_date": {"path": "DateBirth", "normaliser": "birth_date"},
            "kvk": "ChOfCommNr",
        },
    )
    row = {
        "PersonId": "P1",
        "Email": "k@bakker.nl",
        "FirstName": "Kees",
        "LastName": "Bakker",
        "ZipCode": "9711 AB",
        "CountryId": "NL",
        "OrganisationId": "O0001",
        "OrganisationName": "Bakker BV",
        "DateBirth": "1975-12-31T00:00:00Z",
        "ChOfCommNr": "87654321",
    }
    contact = mapped(afas, Kind.CONTACT, row, "P1")
    assert isinstance(contact, Contact)
    assert (contact.postcode, contact.country, contact.business, contact.birth_date, contact.kvk) == (
        "9711 AB",
        "NL",
        True,
        "1975-12-31",
        "87654321",
    )
    assert region_of(contact.country, contact.postcode) == "NL-GR"


def test_silvasoft_and_efficy_company_numbers_through_the_documented_fields_lines(sandboxes: Sandboxes) -> None:
    # Neither list is read for these by default (docs/setup/silvasoft.md and efficy.md, section 9):
    # the `fields` lines there map them where the relation list or saved query returns them.
    silvasoft = make_connector(
        sandboxes, "silvasoft", fields={"kvk": "RegistrationNumber", "vat": "TaxIdentificationNumber"}
    )
    relation = mapped(
        silvasoft,
        Kind.CONTACT,
        {
            "CustomerNumber": 12,
            "Email": "info@visser-hout.nl",
            "Relation_Contact": [{"FirstName": "Ria", "LastName": "Visser"}],
            "RegistrationNumber": "11223344",
            "TaxIdentificationNumber": "001122334B01",
        },
        "12",
    )
    assert isinstance(relation, Contact) and (relation.kvk, relation.vat) == ("11223344", "001122334B01")
    efficy = make_connector(
        sandboxes,
        "efficy",
        fields={"postcode": "POSTCODE", "country": {"path": "COUNTRY", "normaliser": "country"}, "vat": "VAT"},
    )
    contact = mapped(
        efficy,
        Kind.CONTACT,
        {
            "K_CONTACT": 7,
            "EMAIL1": "jo@peeters.be",
            "NAME": "Peeters",
            "POSTCODE": "3000",
            "COUNTRY": "BE",
            "VAT": "BE0123456789",
        },
        "7",
    )
    assert isinstance(contact, Contact) and contact.vat == "BE0123456789"
    assert region_of(contact.country, contact.postcode) == "BE-VBR"  # Leuven, Flemish Brabant
