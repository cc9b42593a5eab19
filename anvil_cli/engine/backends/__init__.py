"""Worker backends: where workers live, behind `engine.backend.Backend`."""
