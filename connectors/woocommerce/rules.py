"""What WooCommerce's replies mean, beyond the HTTP way of reading them.

An API key's permission (`read`, `write`, `read_write`) is checked against the HTTP method in
WordPress's `rest_pre_dispatch`, before any route is matched, and a refusal is a 401: a missing
right (PermissionDenied), not wrong credentials, so neither a retry nor a new token would help.
"""

from __future__ import annotations

import re

from connectors.http import Rule
from connectors.woocommerce.settings import API

# A route that exists in no WooCommerce version: a write method sent to it meets the key check
# (rest_pre_dispatch) and then WordPress's router, never an endpoint.
PERMISSION_PROBE = API + "/crmsync-permission-probe"
# WC_REST_Authentication::check_permissions: "The API key provided does not have write permissions."
KEY_LACKS = re.compile(r"does not have (read|write) permissions", re.IGNORECASE)

# An endpoint's own permission check, answering a request WooCommerce found no user for. Over HTTPS
# `WC_REST_Authentication::perform_basic_authentication` returns without an error when no key
# arrived or the shop does not know it (a typo, a revoked key, a deleted user): only a known key
# with a wrong secret gets "Consumer secret is invalid.". So a 401 with one of these codes means no
# valid key reached WooCommerce, though it reads like a missing capability.
NO_USER = re.compile(r"^woocommerce_rest_cannot_")


def no_key_rule(auth: str) -> Rule:
    """The 401 of a request that reached WooCommerce without a valid key, saying what to fix for
    the configured way of sending the key (`auth`): a host that strips the Authorization header
    drops a Basic-auth key, never one in the query string."""
    says = (
        "no valid API key reached WooCommerce (it answered as to a visitor without one): the "
        "consumer_key is wrong, or the key was revoked or its WordPress user deleted (make a new key)"
    )
    if auth == "basic":
        says += '; if the key is right, the web server strips the Authorization header: set auth = "query"'
    return Rule("auth", 401, code=NO_USER, says=says)


RULES = (
    # The key is right but its permission is not: a new key or a retry would not help.
    Rule("denied", 401, message=KEY_LACKS),
    # The key passed; the WordPress user it belongs to lacks the capability.
    Rule("denied", 403, code=re.compile(r"^woocommerce_rest_cannot_")),
    # One customer asked for by id that WordPress has no user for (`gone_contacts`): that record is
    # gone. Only this code: a 404 `rest_no_route` is a route missing, which says nothing of it.
    Rule(
        "rejected",
        404,
        method="GET",
        path=re.compile("^" + re.escape(API) + r"/customers/\d+$"),
        code=re.compile(r"^woocommerce_rest_invalid_id$"),
    ),
    # The permission probe's 404: the key may write; nothing was dispatched.
    Rule("ok", 404, path=re.compile("^" + re.escape(PERMISSION_PROBE) + "$"), code=re.compile(r"^rest_no_route$")),
)
