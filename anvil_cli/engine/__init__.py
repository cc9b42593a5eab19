"""The engine: conductor, worker processes, journal, shared governor."""
