"""Gives each fake server its own loopback address, deterministically.

Addresses are handed out in order from a block of 127.0.0.0/8 (skipping .0 and .255 host
octets); a counter kept in the state means a deleted server's address is not handed out
again until the block wraps, and a live one never is. An address whose gateway or SSH port is
already taken on this machine (another sandbox, say) is skipped.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable


class AddressAllocator:
    def __init__(
        self,
        network: str,
        ports: tuple[int, ...],
        read_counter: Callable[[], int],
        write_counter: Callable[[int], None],
    ) -> None:
        self.network = ipaddress.IPv4Network(network)
        if not self.network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError("fake servers live on loopback: the network must be inside 127.0.0.0/8")
        self.ports = ports
        self._read_counter = read_counter
        self._write_counter = write_counter

    def _usable(self, address: ipaddress.IPv4Address) -> bool:
        last_octet = int(address) & 0xFF
        return last_octet not in (0, 255) and address != ipaddress.IPv4Address("127.0.0.1")

    def _ports_are_free(self, address: str) -> bool:
        return all(_port_is_free(address, port) for port in self.ports)

    def allocate(self, in_use: set[str]) -> str:
        size = self.network.num_addresses
        counter = self._read_counter()
        for step in range(size):
            index = (counter + step) % size
            address = self.network.network_address + index
            text = str(address)
            if not self._usable(address) or text in in_use:
                continue
            if not self._ports_are_free(text):
                continue
            self._write_counter(index + 1)
            return text
        raise RuntimeError(f"no free loopback address left in {self.network}")


def _port_is_free(address: str, port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def ipv6_network_for(server_id: int) -> str:
    """A documentation-range /64 per server (2001:db8::/32, RFC 3849)."""
    return f"2001:db8:{(server_id >> 16) & 0xFFFF:x}:{server_id & 0xFFFF:x}::/64"
