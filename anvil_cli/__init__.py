"""Anvil: run batches of Claude agent jobs as fast as the rate limits allow."""

__version__ = "0.1.0"
