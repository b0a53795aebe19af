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

RULES = (
    # The key is right but its permission is not: a new key or a retry would not help.
    Rule("denied", 401, message=KEY_LACKS),
    # The key passed; the WordPress user it belongs to lacks the capability.
    Rule("denied", 403, code=re.compile(r"^woocommerce_rest_cannot_")),
    # The permission probe's 404: the key may write; nothing was dispatched.
    Rule("ok", 404, path=re.compile("^" + re.escape(PERMISSION_PROBE) + "$"), code=re.compile(r"^rest_no_route$")),
)
