"""A worker process: one event loop, its agents, its line to the governor, its tools."""
