"""`--serve [HOST:]PORT`: parsing the address, and telling loopback from the rest."""

from __future__ import annotations

import ipaddress
import re

from anvil_cli.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
_PORT = re.compile(r"[0-9]{1,5}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_DOTTED = re.compile(r"[0-9.]+")
_EXPECTED = "expected [HOST:]PORT, e.g. 8080, 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"


def _bad(value: str, reason: str) -> UsageError:
    return UsageError(f"--serve {value!r}: {reason}; {_EXPECTED}")


def _port(text: str, value: str) -> int:
    if not _PORT.fullmatch(text):
        raise _bad(value, f"port {text!r} is not a number" if text else "the port is missing")
    port = int(text)
    if port > 65535:
        raise _bad(value, f"port {port} is out of range (0-65535)")
    return port


def _check_host(host: str, value: str) -> None:
    if _DOTTED.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _bad(value, f"{host!r} is not an IPv4 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise _bad(value, f"{host!r} is not a host name or address")


def _bracketed(text: str, value: str) -> tuple[str, int]:
    host, closed, rest = text[1:].partition("]")
    if not closed:
        raise _bad(value, "the '[' of the IPv6 address is not closed")
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise _bad(value, f"{host!r} is not an IPv6 address") from None
    if not rest.startswith(":"):
        raise _bad(value, "a port must follow the address, as in [::1]:8080")
    return host, _port(rest[1:], value)


def _is_ipv6(text: str) -> bool:
    """True when `text`, or `text` without its last `:part`, is an IPv6 address."""
    for candidate in (text, text.rpartition(":")[0]):
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        return True
    return False


def parse_serve(value: str) -> tuple[str, int]:
    """`[HOST:]PORT` → (host, port); the host defaults to 127.0.0.1, IPv6 goes in brackets.
    Port 0 asks for any free port. Raises UsageError with the reason on anything else."""
    text = value.strip()
    if not text:
        raise _bad(value, "the address is empty")
    if text.startswith("["):
        return _bracketed(text, value)
    host, colon, port = text.rpartition(":")
    if not colon:
        return DEFAULT_HOST, _port(text, value)
    if ":" in host:
        raise _bad(
            value,
            "an IPv6 address goes in brackets, as in [::1]:8080"
            if _is_ipv6(text)
            else f"{host!r} is not a host name or address",
        )
    number = _port(port, value)
    host = host or DEFAULT_HOST
    _check_host(host, value)
    return host, number


def is_loopback(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1; False for every other name or address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback(host: str) -> None:
    """Refuse to expose the API beyond this machine without a token the user chose."""
    if not is_loopback(host):
        raise UsageError(
            f"refusing to serve the API on {host}, which is reachable from other machines, with a "
            "generated token: set ANVIL_API_TOKEN to a long random secret of your own to allow it, "
            "or serve on 127.0.0.1"
        )
