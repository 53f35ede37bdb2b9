"""Secret stack config encrypted in the worker the engine's way (the engine reading it back is
tested with the real engine in tests/integration/reconciler/test_engine_environment.py)."""

import base64
import hashlib
import os

from clawdet.reconciler import passphrase


def encryption_salt(phrase: str) -> str:
    """A stack file's `encryptionsalt` as `pulumi stack init` writes it for `phrase`."""
    salt = os.urandom(8)
    key = hashlib.pbkdf2_hmac("sha256", phrase.encode(), salt, passphrase.ROUNDS, 32)
    return f"v1:{base64.b64encode(salt).decode()}:{passphrase.Crypter(key).encrypt('pulumi')}"


def test_a_stack_salt_made_with_the_passphrase_gives_a_crypter_that_round_trips():
    crypter = passphrase.for_stack("right", encryption_salt("right"))
    ciphertext = crypter.encrypt("gw-token-123")
    assert ciphertext.startswith("v1:") and "gw-token-123" not in ciphertext
    assert crypter.decrypt(ciphertext) == "gw-token-123"
    assert crypter.encrypt("gw-token-123") != ciphertext  # a fresh nonce each time


def test_another_passphrase_or_an_unknown_format_gives_none_and_the_cli_is_asked():
    salt = encryption_salt("right")
    assert passphrase.for_stack("wrong", salt) is None
    for other in (None, "", "v2:abc:v1:x:y", "v1:not base64!:v1:x:y", salt.replace("v1:", "v9:", 1)):
        assert passphrase.for_stack("right", other) is None


def test_a_value_another_key_encrypted_does_not_decrypt():
    one, two = (passphrase.for_stack("p", encryption_salt("p")) for _ in range(2))
    assert two.decrypt(one.encrypt("x")) is None
    assert one.decrypt("garbage") is None and one.decrypt("v1:AAAA:BBBB") is None


def test_the_engines_own_test_vector():
    """A stack salt the real passphrase provider made (pulumi/pulumi pkg/secrets/passphrase,
    manager_test.go): this key is the engine's, and another passphrase's is not."""
    state = "v1:fozI5u6B030=:v1:F+6ZduKKd8G0/V7L:PGMFeIzwobWRKmEAzUdaQHqC5mMRIQ=="
    crypter = passphrase.for_stack("password", state)
    assert crypter is not None and crypter.decrypt(crypter.encrypt("s3cret")) == "s3cret"
    assert passphrase.for_stack("not the password", state) is None
