"""What a CI system shows of a run, natively: a JUnit XML file (`junit.py`), a GitHub Actions
step summary in markdown (`step_summary.py`) and GitHub Actions annotations (`annotations.py`),
each read from the journal after the run; `github.py` decides, from the environment, which of
the GitHub ones a run writes. Job text (errors, check details, ids) comes from models and
servers: every view escapes it for its format."""
