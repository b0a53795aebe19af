"""The settings of a SuperOffice system, and the API's fixed names and limits."""

from __future__ import annotations

import re
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from connectors.http import check_base_url
from connectors.settings import Duration, SystemSettings
from connectors.superoffice.keys import KEY_ERRORS, load_private_key, unusable_key

OIDC_TOKEN_PATH = "/login/common/oauth/tokens"
MAX_TOP = 5000  # (assumed) no documented maximum; the sandbox refuses more
DEFAULT_PAGE = 200
# A UDF key (ProgId, or "SuperOffice:<n>" when the ProgId is empty) or an extra field (x_...).
FIELD_NAME = r"^(SuperOffice:\d+|[A-Za-z_][\w.-]*)$"


class SuperOfficeSettings(SystemSettings):
    type: Literal["superoffice"]
    tenant: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="context identifier, e.g. Cust12345")
    # How crmsync signs in (docs/setup/superoffice.md): "system_user" (server to server: a ticket
    # from the system user token signed with the app's private key), "oidc" (an access token
    # renewed with a user's refresh token), or "ticket" (a fixed token or ticket, as before).
    auth: Literal["system_user", "oidc", "ticket"] = "ticket"
    login_url: str | None = Field(
        default=None, description="the environment's login host (https://sod.superoffice.com); default from base_url"
    )
    app_token: SecretStr | None = Field(default=None, description="the application's client secret (SO-AppToken)")
    access_token: SecretStr | None = None
    auth_scheme: Literal["Bearer", "SOTicket"] = "Bearer"
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    private_key: SecretStr | None = None
    system_user_token: SecretStr | None = None
    context_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$", description="default: tenant")
    token_renew_margin: Duration = Field(default=300.0, description="renew a token this long before it expires")
    segments_field: str | None = Field(default=None, pattern=FIELD_NAME)
    tier_field: str | None = Field(default=None, pattern=FIELD_NAME)
    segments_as: Literal["field", "interests"] = "field"
    orders_archive: str = Field(default="Sale", pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    orders_filter: str | None = Field(default=None, description="extra $filter for the orders archive, and-ed")
    page_size: int | None = Field(default=None, ge=1, le=MAX_TOP)

    @model_validator(mode="after")
    def _credentials_of_the_flow(self) -> Self:
        needed = {
            "system_user": ("app_token", "private_key", "system_user_token"),
            "oidc": ("client_id", "client_secret", "refresh_token"),
            "ticket": ("access_token", "app_token"),
        }[self.auth]
        missing = [f"{key}: field required (auth = {self.auth!r})" for key in needed if getattr(self, key) is None]
        if missing:
            raise ValueError("\n".join(missing))  # one config error line each
        if self.auth == "system_user" and self.private_key is not None:
            try:  # read now: a key that cannot sign is a config error, not a refused sign-in later
                load_private_key(self.private_key.get_secret_value())
            except KEY_ERRORS as exc:
                raise ValueError(f"private_key: {unusable_key(exc)}") from None
        if self.login_url is not None:
            check_base_url(self.login_url)
        return self

    @property
    def login_origin(self) -> str:
        """Where tokens and tickets come from: SuperOffice signs in on the environment's root host
        (sod, online, qaonline) while the API answers on the tenant's numbered one (sod2, online3)."""
        if self.login_url:
            return self.login_url.rstrip("/")
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        match = re.match(r"^(sod|online|qaonline|stage)\d*\.superoffice\.com$", host)
        return f"{parts.scheme}://{match.group(1)}.superoffice.com" if match else self.base_url

    @property
    def application_secret(self) -> SecretStr:
        """SO-AppToken: the client secret, whichever key holds it."""
        secret = self.app_token or self.client_secret
        assert secret is not None
        return secret

    @model_validator(mode="after")
    def _somewhere_to_write(self) -> Self:
        if self.segments_as == "interests" and self.segments_field:
            raise ValueError("segments_field and segments_as = 'interests' exclude each other: choose one")
        if self.segments_field and self.segments_field == self.tier_field:
            raise ValueError("segments_field and tier_field must be different fields")
        if self.writeback and not (self.segments_field or self.tier_field or self.segments_as == "interests"):
            raise ValueError(
                "nothing to write to: set segments_field and/or tier_field (UDF ProgId, 'SuperOffice:<n>' "
                "or extra field 'x_...'), or segments_as = 'interests', or writeback = false"
            )
        return self
