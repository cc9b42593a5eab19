"""Checking answers: what a job asks of its answer (`spec.py`: an output schema and checks),
whether an answer meets it (`schema.py`, `evaluate.py`, `judge.py`), and what was found
(`record.py`: a job's `CheckRecord`, kept in the journal and on every result). Pure: no I/O;
the worker and Message Batches mode drive it (re-asks and judge calls are theirs to make)."""
