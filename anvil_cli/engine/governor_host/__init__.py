"""Where the run's governor lives: a Manager process locally, a named actor on Ray."""
