"""The journal (SQLite, WAL): the source of truth for runs, jobs, calls, samples and batches."""
