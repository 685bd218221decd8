"""The notifier: Alertmanager webhooks in, console / signed webhook / Slack / email out."""
