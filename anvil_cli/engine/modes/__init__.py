"""How calls are made: the Messages API (the conductor's own) or Message Batches (`batches/`)."""
