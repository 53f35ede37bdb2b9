"""Secret stack config encrypted in this process, as the engine's passphrase secrets provider
does (pkg/secrets/passphrase: PBKDF2-SHA256, 1,000,000 rounds, over the stack's own salt; then
AES-256-GCM, "v1:<nonce>:<ciphertext>", base64). A `pulumi config set --secret` per value costs
0.6 s of CPU (a CLI start and the same key derivation each time), three for a new instance; here
the key is derived once per stack and the secret never leaves the worker. The stack's check
value (its `encryptionsalt`, "pulumi" encrypted) proves the key is the engine's before any use:
`for_stack` gives None for anything else, and the caller asks the CLI instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROUNDS = 1_000_000
CHECK = "pulumi"


class Crypter:
    def __init__(self, key: bytes):
        self.aead = AESGCM(key)

    def encrypt(self, text: str) -> str:
        nonce = os.urandom(12)
        sealed = self.aead.encrypt(nonce, text.encode(), None)
        return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"

    def decrypt(self, ciphertext: str) -> str | None:
        """The plain text, or None when this key did not encrypt `ciphertext`."""
        version, _, rest = ciphertext.partition(":")
        nonce, _, sealed = rest.partition(":")
        if version != "v1" or not sealed:
            return None
        try:
            return self.aead.decrypt(base64.b64decode(nonce), base64.b64decode(sealed), None).decode()
        except (InvalidTag, ValueError, binascii.Error):
            return None


def for_stack(passphrase: str, encryption_salt: object) -> Crypter | None:
    """The stack's crypter from its `encryptionsalt` ("v1:<salt>:<check value>"), or None when
    the value is missing, of another format, or not made with this passphrase."""
    if not isinstance(encryption_salt, str):
        return None
    version, _, rest = encryption_salt.partition(":")
    salt, _, check = rest.partition(":")
    if version != "v1" or not check:
        return None
    try:
        key = hashlib.pbkdf2_hmac("sha256", passphrase.encode(), base64.b64decode(salt), ROUNDS, 32)
    except (ValueError, binascii.Error):
        return None
    crypter = Crypter(key)
    return crypter if crypter.decrypt(check) == CHECK else None
