"""The backup file format: what is sealed opens again with the same key, in chunks; anything
changed, cut short, reordered or opened with another key is refused."""

import io
import os

import pytest

from clawdet.backups import encryption
from clawdet.backups.encryption import CHUNK, HEADER, TAG, CorruptBackup, decrypt, encrypt

KEY = bytes(range(32))


def sealed(plain: bytes, key: bytes = KEY, version: int = 3) -> bytes:
    out = io.BytesIO()
    written = encrypt(io.BytesIO(plain), out, key, version)
    assert written == len(out.getvalue())
    return out.getvalue()


def opened(data: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    assert decrypt(io.BytesIO(data), out, key) == len(out.getvalue())
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 7])
def test_round_trip_at_every_chunk_boundary(size):
    plain = os.urandom(size)
    data = sealed(plain)
    chunks = max(1, -(-size // CHUNK))
    assert len(data) == HEADER.size + size + chunks * TAG
    assert opened(data) == plain


def test_the_header_names_the_key_version_and_nonces_differ():
    first, second = sealed(b"same"), sealed(b"same")
    assert encryption.key_version_of(first[: HEADER.size]) == 3
    assert first != second  # a fresh nonce prefix each time


def test_a_flipped_bit_anywhere_is_detected():
    data = bytearray(sealed(os.urandom(CHUNK + 100)))
    for position in (HEADER.size - 1, HEADER.size, HEADER.size + CHUNK + 5, len(data) - 1):
        corrupted = bytearray(data)
        corrupted[position] ^= 0x01
        with pytest.raises(CorruptBackup):
            opened(bytes(corrupted))


def test_another_key_is_refused():
    with pytest.raises(CorruptBackup, match="another key"):
        opened(sealed(b"secret state"), key=bytes(32))


def test_a_file_cut_after_a_whole_chunk_is_refused():
    data = sealed(os.urandom(2 * CHUNK + 10))
    cut = data[: HEADER.size + CHUNK + TAG]  # the first chunk is intact but was not the last
    with pytest.raises(CorruptBackup):
        opened(cut)


def test_swapped_chunks_are_refused():
    data = sealed(os.urandom(3 * CHUNK))
    body = data[HEADER.size :]
    first, second, rest = (
        body[: CHUNK + TAG],
        body[CHUNK + TAG : 2 * (CHUNK + TAG)],
        body[2 * (CHUNK + TAG) :],
    )
    with pytest.raises(CorruptBackup):
        opened(data[: HEADER.size] + second + first + rest)


@pytest.mark.parametrize("data", [b"", b"not a backup at all", b"CLAWBK1\n" + b"\0" * 12])
def test_not_a_backup(data):
    with pytest.raises(CorruptBackup):
        opened(data)


def test_a_key_must_be_32_bytes():
    with pytest.raises(ValueError, match="32 bytes"):
        sealed(b"x", key=b"short")


class Trickle(io.RawIOBase):
    """A network body: each read returns at most a few KB."""

    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self.data.read(min(size, 4096) if size >= 0 else 4096)


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7])
def test_a_stream_read_in_short_pieces_opens_chunk_by_chunk_to_its_announced_size(size):
    plain = os.urandom(size)
    data = sealed(plain)
    assert encryption.plaintext_size(len(data)) == size
    chunks = list(encryption.decrypted_chunks(Trickle(data), KEY))
    assert b"".join(chunks) == plain and len(chunks) == max(1, -(-size // CHUNK))
