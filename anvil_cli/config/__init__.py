"""Settings: their schema, their sources (flags > ANVIL_* > file > defaults), their checks, the endpoint."""
