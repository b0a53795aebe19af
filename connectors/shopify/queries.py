"""The GraphQL documents crmsync sends to read (tests validate each against the published schema,
`admin_2026-10.graphql`, with no deprecated field)."""

from __future__ import annotations

# What crmsync reads of each customer and order: one selection for the paged and the bulk read.
CUSTOMER_FIELDS = """
      id firstName lastName createdAt updatedAt tags
      defaultEmailAddress { emailAddress marketingState }
      defaultPhoneNumber { phoneNumber }
      defaultAddress { address1 zip city countryCodeV2 company }
      loyaltyTier: metafield(namespace: "crmsync", key: "loyalty_tier") { value }
"""
ORDER_FIELDS = """
      id name email createdAt updatedAt cancelledAt test displayFinancialStatus discountCodes
      currentTotalPriceSet { shopMoney { amount currencyCode } }
      totalPriceSet { shopMoney { amount } } totalRefundedSet { shopMoney { amount } }
      customer { id }
"""

CUSTOMERS_QUERY = f"""
query CrmsyncCustomers($first: Int!, $after: String, $query: String) {{
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{{CUSTOMER_FIELDS}    }}
  }}
}}
"""

ORDERS_QUERY = f"""
query CrmsyncOrders($first: Int!, $after: String, $query: String) {{
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{{ORDER_FIELDS}    }}
  }}
}}
"""

# A full read of a big store as one bulk query (bulk.py): the same fields, every node, in the
# `edges { node }` form every example of Shopify's bulk query guide uses (page sizes are ignored).
BULK_CUSTOMERS_QUERY = f"query CrmsyncBulkCustomers {{ customers {{ edges {{ node {{{CUSTOMER_FIELDS}}} }} }} }}"
BULK_ORDERS_QUERY = f"query CrmsyncBulkOrders {{ orders {{ edges {{ node {{{ORDER_FIELDS}}} }} }} }}"
# How big a full read is (at most `limit`): whether it is worth a bulk query.
COUNT_QUERIES = {
    "customers": "query CrmsyncCustomersCount($limit: Int) { customersCount(limit: $limit) { count } }",
    "orders": "query CrmsyncOrdersCount($limit: Int) { ordersCount(limit: $limit) { count } }",
}

# With each order's first lines and their product type (for interests). A connection inside a
# connection multiplies the calculated cost: 2 + LINES x 2 points per order, so a page holds fewer
# orders (ORDERS_WITH_LINES_PAGE keeps one request under the 1000-point limit).
ORDER_LINES = 10
ORDERS_WITH_LINES_PAGE = 30
ORDERS_WITH_LINES_QUERY = ORDERS_QUERY.replace(
    "customer { id }\n",
    f"customer {{ id }}\n      lineItems(first: {ORDER_LINES}) {{ nodes {{ product {{ productType }} }} }}\n",
).replace("CrmsyncOrders(", "CrmsyncOrderLines(")

# Abandoned checkouts (read_orders scope): there is no UPDATED_AT sort key, so the stream reads
# the checkouts created within the window afresh each cycle. The total is aliased to the field the
# order map reads, so a checkout maps as an (unfinished) order.
CHECKOUTS_QUERY = """
query CrmsyncCheckouts($first: Int!, $after: String, $query: String) {
  abandonedCheckouts(first: $first, after: $after, query: $query, sortKey: CREATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id createdAt updatedAt completedAt discountCodes
      currentTotalPriceSet: totalPriceSet { shopMoney { amount currencyCode } }
      customer { id }
    }
  }
}
"""

# The most nodes one page of each paged query may ask for: Shopify refuses a query whose
# calculated cost is over 1000 points (MAX_COST_EXCEEDED), a connection costing 2 plus `first` times
# one node (objects 1 point, scalars 0). A node of a customer is 5, of an order 8 (three money
# objects of two each, and its customer), of a checkout 4. A configured `page_size` is cut to these;
# tests price each query at its largest page with the emulator's cost model.
MAX_QUERY_COST = 1000
NODE_COST = {"customers": 5, "orders": 8, "checkouts": 4}


def largest_page(root: str) -> int:
    return (MAX_QUERY_COST - 2) // NODE_COST[root]


CHECK_QUERY = "query CrmsyncCheck { shop { name currencyCode } currentAppInstallation { accessScopes { handle } } }"
SCOPES_QUERY = "query CrmsyncScopes { currentAppInstallation { accessScopes { handle } } }"
# Asked on its own: a check must not fail on what only feeds a warning.
ZONE_QUERY = "query CrmsyncZone { shop { ianaTimezone } }"


# What crmsync owns on given customers now (`verify_owned`, before an erasure writes): as many
# `customer(id:)` fields in one document as a write batch holds, at a point or two each.
OWNED_PAGE = 25


def owned_query(count: int) -> str:
    declared = ", ".join(f"$id{i}: ID!" for i in range(count))
    fields = "\n".join(
        f'  c{i}: customer(id: $id{i}) {{ id tags loyaltyTier: metafield(namespace: "crmsync", key: "loyalty_tier") '
        "{ value } }"
        for i in range(count)
    )
    return f"query CrmsyncOwned({declared}) {{\n{fields}\n}}"
