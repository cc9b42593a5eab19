"""Process hygiene: the fork server, children that never outlive the run, signals, open files."""
