"""Load the settings once: read every source (`config/sources.py`), merge them by precedence
(flags > `ANVIL_*` > file > defaults) and judge the result (`config/check.py`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anvil_cli.config.check import check_settings
from anvil_cli.config.settings import Settings
from anvil_cli.config.sources import Origin, flags_layer, merge_layers, read_env_layer, read_file_layer

CONFIG_FILE_NAME = "anvil.yaml"


def load_settings(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    variables: bool = False,
) -> Settings:
    """Build the settings from defaults < file < ANVIL_* env < flags. Raises ConfigError.

    1. `overrides` (flags) win; a None value in them means "flag not given";
    2. then `ANVIL_*` variables from `env` (default: `os.environ`), `__` between levels;
    3. then the file: `config_path` (must exist), else `./anvil.yaml` when present;
    4. then the built-in defaults.
    Every problem from every source is collected before raising. A relative `state_dir` is
    resolved against the current directory. Nothing is created or written. `variables`: check
    the variables the settings name (a webhook's URL and headers) are set — for `anvil run` and
    `anvil validate`, not for commands that only read (`anvil status` from another shell).
    """
    return load_located_settings(config_path, env, overrides, variables=variables)[0]


def load_located_settings(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    variables: bool = False,
) -> tuple[Settings, dict[str, Origin]]:
    """`load_settings`, and where each value came from (by dotted path: `endpoints[1].region`),
    for checks made after loading (`anvil validate`'s of the endpoints) to point at a line."""
    layers = []
    path = config_path if config_path is not None else _default_config_path()
    if path is not None:
        layers.append(read_file_layer(path))
    layers.append(read_env_layer(os.environ if env is None else env, set(Settings.model_fields)))
    layers.append(flags_layer(overrides or {}))
    merged = merge_layers(layers)
    return check_settings(merged, env, variables=variables), merged.origins


def _default_config_path() -> Path | None:
    candidate = Path(CONFIG_FILE_NAME)
    return candidate if candidate.is_file() else None
