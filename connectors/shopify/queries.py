"""The GraphQL documents crmsync sends to read (tests validate each against the published schema,
`admin_2026-10.graphql`, with no deprecated field)."""

from __future__ import annotations

CUSTOMERS_QUERY = """
query CrmsyncCustomers($first: Int!, $after: String, $query: String) {
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id firstName lastName createdAt updatedAt tags
      defaultEmailAddress { emailAddress }
      defaultPhoneNumber { phoneNumber }
      defaultAddress { address1 zip city countryCodeV2 }
      loyaltyTier: metafield(namespace: "crmsync", key: "loyalty_tier") { value }
    }
  }
}
"""

ORDERS_QUERY = """
query CrmsyncOrders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name email createdAt updatedAt cancelledAt test displayFinancialStatus
      currentTotalPriceSet { shopMoney { amount currencyCode } }
      customer { id }
    }
  }
}
"""

CHECK_QUERY = "query CrmsyncCheck { shop { name currencyCode } currentAppInstallation { accessScopes { handle } } }"
SCOPES_QUERY = "query CrmsyncScopes { currentAppInstallation { accessScopes { handle } } }"
