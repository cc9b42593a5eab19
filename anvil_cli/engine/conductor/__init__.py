"""The conductor: dispatch from the ready queue, the book of who holds what, workers watched."""
