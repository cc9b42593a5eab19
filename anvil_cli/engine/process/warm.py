"""Preloaded by the fork server: import and warm the SDK once, so every worker (and every
replacement after a crash) starts in milliseconds instead of re-importing it. What it built is
then frozen (`gc.freeze`): the workers' collector never walks it, so the pages they share with
the fork server stay shared instead of being copied into each worker."""

from __future__ import annotations

import gc

import anthropic
import anthropic.resources.messages
import anthropic.types

import anvil_cli.engine.worker.loop  # noqa: F401
from anvil_cli.config.vault import set_not_dumpable


def _warm() -> None:
    client = anthropic.Anthropic(api_key="warm-up", base_url="http://127.0.0.1:9", max_retries=0)
    _ = client.messages.with_raw_response  # builds the resource classes
    client.close()


set_not_dumpable()  # the fork server: workers fork from it and inherit this
_warm()
gc.collect()
gc.freeze()
