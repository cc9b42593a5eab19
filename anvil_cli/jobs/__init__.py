"""Batch files: the three shapes users write, loaded through one streaming loader."""
