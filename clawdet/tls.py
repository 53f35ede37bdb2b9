"""One verifying TLS context per process for the platform's HTTP clients. httpx builds a new one
for every client and every one-off call, loading the CA bundle each time (about 35 ms here, five
times in a new instance's converge)."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def verifying_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
