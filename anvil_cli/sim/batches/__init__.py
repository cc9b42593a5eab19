"""The simulator's Message Batches API: batches, their requests, their results files."""
