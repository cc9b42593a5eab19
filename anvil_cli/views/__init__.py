"""What shows a run: the dashboard, progress lines, spend, report, the HTTP API and web page."""
