"""The budget ledger: spend per scope, window and period across every run and process of a state
dir, and the leases governors hold on it (`store.py`); the scoped-budget book a run's governor
is built with (`book.py`)."""
