"""The run's web page, served live by `anvil run --serve` and inlined by `anvil report`: static
files shipped as package data (index.html, app.js, app.css and the vendored uPlot chart library,
see vendor/VERSION). The page and its files carry no data, so they are served without the token;
everything they show comes from the token-protected API (or, in a report, the embedded data)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

__all__ = ["ASSETS", "CSP", "PAGE", "SECURITY_HEADERS", "public_paths", "read"]

PAGE: Final = "index.html"
ASSETS: Final = {  # served at /static/<name>: (file in this package, content type)
    "charts.js": ("charts.js", "text/javascript"),
    "app.js": ("app.js", "text/javascript"),
    "app.css": ("app.css", "text/css"),
    "uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript"),
    "uPlot.min.css": ("vendor/uPlot.min.css", "text/css"),
}

# The live page: its own scripts and styles only, no inline code, no other origin. uPlot sizes
# its elements through `element.style` (CSSOM), which style-src does not govern.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {  # on every response of the API, data or page
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@functools.cache
def read(name: str) -> bytes:
    """A file of the page: `PAGE`, or a key of `ASSETS`."""
    path = PAGE if name == PAGE else ASSETS[name][0]
    return resources.files(__package__).joinpath(path).read_bytes()


def public_paths() -> frozenset[str]:
    """The paths served without the token: the page and its static files, nothing else."""
    return frozenset({"/", *(f"/static/{name}" for name in ASSETS)})
