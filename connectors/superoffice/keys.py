"""The SuperOffice app's private key, which signs the system user token: read from the PEM or the
RSA XML the developer portal hands out. Read when the config is loaded (a key that cannot sign is a
config error) and again when crmsync signs in."""

from __future__ import annotations

import base64
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# What reading a key that is no usable private key raises (an encrypted PEM: TypeError).
KEY_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """The app's private key as PEM, or as the RSA XML the SuperOffice developer portal hands out
    (`<RSAKeyValue><Modulus>...<D>...</RSAKeyValue>`)."""
    text = text.strip()
    if text.startswith("<RSAKeyValue>"):
        return _xml_private_key(text)
    key = serialization.load_pem_private_key(text.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    return key


def _xml_private_key(text: str) -> rsa.RSAPrivateKey:
    def number(tag: str) -> int:
        match = re.search(rf"<{tag}>([^<]+)</{tag}>", text)
        if match is None:
            raise ValueError(f"the RSA XML key has no <{tag}>")
        return int.from_bytes(base64.b64decode(match.group(1)), "big")

    public = rsa.RSAPublicNumbers(number("Exponent"), number("Modulus"))
    private = rsa.RSAPrivateNumbers(
        number("P"), number("Q"), number("D"), number("DP"), number("DQ"), number("InverseQ"), public
    )
    return private.private_key()


def unusable_key(exc: BaseException) -> str:
    """What to say of a key `load_private_key` could not read."""
    return (
        f"is not a usable RSA private key ({exc}): paste the PEM (not encrypted), or the <RSAKeyValue> XML "
        "the developer portal gave when the certificate was made"
    )
