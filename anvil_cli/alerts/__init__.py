"""Alerts: the rules (pure, judged on each snapshot) and their delivery (the user's command, and
webhooks as Slack-compatible JSON)."""
