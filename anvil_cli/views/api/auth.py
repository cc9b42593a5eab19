"""The API's bearer token: where it comes from, where it is kept, how a request is checked."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from anvil_cli.errors import UsageError
from anvil_cli.views.api.address import is_loopback, parse_serve, require_loopback

__all__ = ["TOKEN_ENV", "TOKEN_FILE", "bearer_matches", "parse_serve", "resolve_token", "write_secret"]

TOKEN_ENV = "ANVIL_API_TOKEN"
TOKEN_FILE = "api_token"
MIN_REMOTE_TOKEN_CHARS = 16


def resolve_token(state_dir: Path, host: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """The token for serving on `host`, and whether it was generated (print it once, then never).

    1. `ANVIL_API_TOKEN` when set and not blank: the user's own secret, allowed on any address
       (at least 16 characters beyond loopback).
    2. Otherwise loopback only: a fresh random token, written 0600 to `state_dir/api_token`.
    """
    given = env.get(TOKEN_ENV, "").strip()
    if given:
        if not is_loopback(host) and len(given) < MIN_REMOTE_TOKEN_CHARS:
            raise UsageError(
                f"{TOKEN_ENV} is too short to serve the API on {host}, which is reachable from other "
                f"machines: use at least {MIN_REMOTE_TOKEN_CHARS} random characters"
            )
        return given, False
    require_loopback(host)
    token = secrets.token_urlsafe(32)
    write_secret(state_dir / TOKEN_FILE, token)
    return token, True


def write_secret(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, mode 0600, in a directory created 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # a fresh name, never an existing file or a link planted there: O_EXCL and O_NOFOLLOW
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def bearer_matches(header: str | None, token: str) -> bool:
    """True when an `Authorization` header carries `Bearer <token>` (compared in constant time)."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
