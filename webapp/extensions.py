import ipaddress

from flask import request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect


def network_of(ip: str | None) -> str:
    """Who counts as one client for limits: an IPv4 address, or an IPv6 /64 (what one subscriber
    gets, so walking through its addresses buys no more tries)."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return "unknown"
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def client_network() -> str:
    return network_of(request.remote_addr)


login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=client_network, default_limits=[], headers_enabled=True)
