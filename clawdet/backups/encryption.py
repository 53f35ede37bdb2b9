"""The encrypted backup file: AES-256-GCM in chunks, so neither side holds a whole archive.

Layout: a 20-byte header (magic, key version, a random nonce prefix), then chunks of CHUNK bytes
of plaintext, each sealed with its own nonce (prefix + counter) and a 16-byte tag. Every chunk's
associated data is the header, its counter and whether it is the last one, so a changed,
reordered, dropped or truncated chunk, or a swapped header, fails to decrypt.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"CLAWBK1\n"
CHUNK = 1024 * 1024
TAG = 16
HEADER = struct.Struct(">8sI8s")  # magic, key version, nonce prefix
KEY_BYTES = 32


class CorruptBackup(ValueError):
    """The file is not a backup sealed with this key, or it was changed or cut short."""


def encrypt(source: BinaryIO, target: BinaryIO, key: bytes, key_version: int) -> int:
    """Seals `source` into `target`; returns the bytes written."""
    aead = _aead(key)
    header = HEADER.pack(MAGIC, key_version, os.urandom(8))
    target.write(header)
    written = len(header)
    counter = 0
    current = source.read(CHUNK)
    while True:
        following = source.read(CHUNK)
        last = not following
        sealed = aead.encrypt(_nonce(header, counter), current, _associated(header, counter, last))
        target.write(sealed)
        written += len(sealed)
        if last:
            return written
        current, counter = following, counter + 1


def decrypt(source: BinaryIO, target: BinaryIO, key: bytes) -> int:
    """Opens what `encrypt` sealed into `target`; returns the plaintext bytes. On CorruptBackup
    part of the plaintext may have been written: the caller discards `target`."""
    written = 0
    for plain in decrypted_chunks(source, key):
        target.write(plain)
        written += len(plain)
    return written


def decrypted_chunks(source: BinaryIO, key: bytes) -> Iterator[bytes]:
    """The plaintext, chunk by chunk, each yielded only once it is authenticated; CorruptBackup
    at the first chunk that is not (a stream may read in short pieces: a network body)."""
    aead = _aead(key)
    header = read_header(source)
    counter = 0
    current = _read_full(source, CHUNK + TAG)
    while True:
        following = _read_full(source, CHUNK + TAG)
        last = not following
        if len(current) < TAG or (not last and len(current) != CHUNK + TAG):
            raise CorruptBackup("the backup is cut short or has a damaged chunk")
        try:
            yield aead.decrypt(_nonce(header, counter), current, _associated(header, counter, last))
        except InvalidTag:
            raise CorruptBackup("the backup was changed or sealed with another key") from None
        if last:
            return
        current, counter = following, counter + 1


def plaintext_size(sealed_size: int) -> int:
    """How many bytes a sealed file of `sealed_size` bytes opens to (its header and tags off)."""
    chunks = max(1, -(-(sealed_size - HEADER.size) // (CHUNK + TAG)))
    return sealed_size - HEADER.size - chunks * TAG


def _read_full(source: BinaryIO, size: int) -> bytes:
    parts, missing = [], size
    while missing:
        part = source.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def read_header(source: BinaryIO) -> bytes:
    header = _read_full(source, HEADER.size)
    if len(header) != HEADER.size or HEADER.unpack(header)[0] != MAGIC:
        raise CorruptBackup("not a Clawdet backup (its header is missing)")
    return header


def key_version_of(header: bytes) -> int:
    return HEADER.unpack(header)[1]


def _aead(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise ValueError(f"a backup key is {KEY_BYTES} bytes")
    return AESGCM(key)


def _nonce(header: bytes, counter: int) -> bytes:
    return HEADER.unpack(header)[2] + struct.pack(">I", counter)


def _associated(header: bytes, counter: int, last: bool) -> bytes:
    return header + struct.pack(">I?", counter, last)
