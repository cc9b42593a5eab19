"""The `anvil simulate` options that describe simulated endpoints and their shared ceilings:
`--endpoint NAME[:key=value,...]` and `--shared NAME:endpoints=A+B[,key=value,...]`."""

from __future__ import annotations

from anvil_cli.sim.config import TIERS, EndpointSim, SharedSim, SimConfig, check_endpoints

_NUMBERS = {"rpm": "rpm", "itpm": "itpm", "otpm": "otpm", "off_after": "off_after_s", "off_for": "off_for_s"}
_LIMITS = ("rpm", "itpm", "otpm", "burst", "tier")


def _positive(what: str, key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what}: {key} needs a number, got {value!r}") from None
    if number < 0 or (number == 0 and key != "off_after"):
        raise ValueError(f"{what}: {key} must be above 0, got {value!r}")
    return number


def _values(what: str, rest: str, keys: tuple[str, ...]) -> dict[str, object]:
    """The `key=value,...` items of a spec as field values (a tier's limits under explicit ones)."""
    values: dict[str, object] = {}
    tier = None
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = (x.strip() for x in item.partition("="))
        if not sep or not value:
            raise ValueError(f"{what}: {item!r} is not key=value")
        if key not in keys:
            raise ValueError(f"{what}: unknown key {key!r} (known: {', '.join(keys)})")
        if key in _NUMBERS:
            values[_NUMBERS[key]] = _positive(what, key, value)
        elif key == "burst":
            values["burst"] = max(1, int(_positive(what, key, value)))
        elif key == "tier":
            if value.lower() not in TIERS:
                raise ValueError(f"{what}: unknown tier {value!r}; known: {', '.join(TIERS)}")
            tier = TIERS[value.lower()]
        else:
            values[key] = value
    if tier is not None:
        values = {"rpm": tier.rpm, "itpm": tier.itpm, "otpm": tier.otpm, **values}
    return values


def parse_endpoint(spec: str) -> tuple[str, EndpointSim]:
    """`NAME[:key=value,...]` as (name, settings); keys: rpm, itpm, otpm, burst, tier (its
    rpm/itpm/otpm under explicit ones), provider, off_after and off_for (seconds). ValueError
    says what is wrong."""
    name, _, rest = (part.strip() for part in spec.partition(":"))
    values = _values(f"endpoint {name!r}", rest, (*_LIMITS, "provider", "off_after", "off_for"))
    endpoint = EndpointSim(**values)  # type: ignore[arg-type]
    check_endpoints(SimConfig(endpoints={name: endpoint}))
    return name, endpoint


def parse_shared(spec: str) -> tuple[str, SharedSim]:
    """`NAME:endpoints=A+B[,key=value,...]` as (name, ceiling); keys: endpoints (required),
    rpm, itpm, otpm, burst, tier. The endpoints are checked against the simulator's by
    `check_endpoints`."""
    name, _, rest = (part.strip() for part in spec.partition(":"))
    values = _values(f"shared limit {name!r}", rest, (*_LIMITS, "endpoints"))
    members = tuple(filter(None, (e.strip() for e in str(values.pop("endpoints", "")).split("+"))))
    if not name or not members:
        raise ValueError(f"shared limit {spec!r}: expected NAME:endpoints=A+B[,rpm=N,...]")
    return name, SharedSim(endpoints=members, **values)  # type: ignore[arg-type]
