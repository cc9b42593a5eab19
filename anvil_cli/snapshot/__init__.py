"""The one value every view reads: engine state, metrics, series, history, alerts, status."""
