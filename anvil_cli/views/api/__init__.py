"""The opt-in HTTP API of a running batch (`anvil run --serve [HOST:]PORT`).

Import from the modules (`anvil_cli.views.api.address`, `.auth`, `.server`): this package imports
nothing itself, so parsing `--serve` does not pull aiohttp or prometheus_client into the CLI."""
