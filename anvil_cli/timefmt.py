"""The one way Anvil writes a moment for people: ISO 8601 in the local zone, to the second,
with the zone's offset (`2026-12-05T03:15:00+01:00`). The terminal views (status, dashboard,
progress and alert lines) use `local_iso`; the web page and the report format the same shape in
the browser's zone (`isoLocal` in anvil_cli/views/web/charts.js). Machine output (JSON, the journal,
the API) keeps Unix seconds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

MISSING: Final = "-"


def local_iso(wall: float | None, missing: str = MISSING) -> str:
    """`wall` (Unix seconds) as `YYYY-MM-DDTHH:MM:SS+HH:MM` in the local zone (the TZ variable,
    else the system's); `missing` when there is no time (None, or 0: never set)."""
    if not wall:
        return missing
    return datetime.fromtimestamp(wall, UTC).astimezone().isoformat(timespec="seconds")
