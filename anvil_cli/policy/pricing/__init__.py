"""Prices: the model table (`data/prices.yaml`) and the cost of a call from its usage."""
