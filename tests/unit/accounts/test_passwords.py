import bcrypt

from clawdet.accounts.passwords import hash_password, verify_password
from webapp.security import safe_next


def test_new_hashes_are_argon2id():
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse") == (True, False)
    assert verify_password(stored, "wrong horse") == (False, False)


def test_bcrypt_hash_verifies_and_asks_for_upgrade():
    stored = bcrypt.hashpw(b"legacy-pass", bcrypt.gensalt(rounds=4)).decode()
    assert verify_password(stored, "legacy-pass") == (True, True)
    assert verify_password(stored, "other-pass") == (False, False)


def test_garbage_hash_never_matches():
    assert verify_password("not a hash", "x") == (False, False)
    assert verify_password(None, "x") == (False, False)


def test_safe_next_keeps_only_local_paths():
    assert safe_next("/dashboard?x=1", "/d") == "/dashboard?x=1"
    for hostile in [
        "https://evil.test/",
        "//evil.test",
        "/\\evil.test",
        "javascript:alert(1)",
        "evil.test",
        "",
        None,
        "/\nLocation: x",
    ]:
        assert safe_next(hostile, "/d") == "/d"
