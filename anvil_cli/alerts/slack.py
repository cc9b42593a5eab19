"""An alert change as Slack-compatible JSON, the body `alerts.webhooks` receivers get.

`text` is the one-line summary Slack shows in notifications, `blocks` the same as one mrkdwn
section; `anvil` carries the alert's fields for receivers that are not Slack (Slack ignores a
key it does not know). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from anvil_cli.alerts.rules import AlertChange, format_change


def slack_escape(text: str) -> str:
    """Slack's three control characters in message text (`&`, `<`, `>`) as its entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(change: AlertChange, run_id: str) -> str:
    """`ALERT [high] queue_depth: 612 jobs waiting ... (run 20261205-...)`."""
    return f"{format_change(change)} (run {run_id})"


def webhook_body(change: AlertChange, run_id: str) -> dict[str, Any]:
    """The JSON posted to a webhook for one raised or cleared alert."""
    alert = change.alert
    verb = "ALERT" if change.kind == "raised" else "Alert cleared"
    mrkdwn = (
        f"*{verb}* [{alert['severity']}] *{slack_escape(alert['name'])}*: {slack_escape(alert['message'])}"
        f" (run `{slack_escape(run_id)}`)"
    )
    return {
        "text": slack_escape(summary(change, run_id)),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}],
        "anvil": {
            "run_id": run_id,
            "change": change.kind,
            "name": alert["name"],
            "severity": alert["severity"],
            "message": alert["message"],
            "value": alert["value"],
            "threshold": alert["threshold"],
            "since": alert["since"],
            "at": change.at,  # Unix seconds, as the journal's alert event and `alerts.command` have it
        },
    }
