"""`anvil plan`: estimate a batch before spending anything, or sample a few of its jobs."""
