"""Which simulated endpoints are off: a timed outage from their settings (`off_after_s`,
`off_for_s`), or a switch thrown by a directive (`@sim{endpoint_off=NAME}`) or the control API.
Pure: time is passed in. A thrown switch wins over the timed outage until `restart`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from anvil_cli.sim.config import EndpointSim


@dataclass(slots=True)
class Switches:
    """The on/off state of every endpoint of one simulator."""

    endpoints: Mapping[str, EndpointSim]
    started_s: float | None = None  # timed outages count from here (None: not started, all on)
    thrown: dict[str, bool] = field(default_factory=dict)  # name -> off, set by hand

    def restart(self, now_s: float) -> None:
        """Count timed outages from `now_s`, and forget the switches thrown by hand."""
        self.started_s = now_s
        self.thrown.clear()

    def known(self, name: str) -> bool:
        return name in self.endpoints

    def throw(self, name: str, off: bool) -> None:
        """Turn endpoint `name` off (or back on) from now on; KeyError when it is unknown."""
        if name not in self.endpoints:
            raise KeyError(name)
        self.thrown[name] = off

    def is_off(self, name: str, now_s: float) -> bool:
        """Whether endpoint `name` refuses calls at `now_s`."""
        if name in self.thrown:
            return self.thrown[name]
        endpoint = self.endpoints.get(name)
        if endpoint is None or endpoint.off_after_s is None or self.started_s is None:
            return False
        elapsed_s = now_s - self.started_s
        if elapsed_s < endpoint.off_after_s:
            return False
        return endpoint.off_for_s is None or elapsed_s < endpoint.off_after_s + endpoint.off_for_s
