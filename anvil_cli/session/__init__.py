"""The composition root of one `anvil run`: settings, journal, backend, views, serve, finish."""
