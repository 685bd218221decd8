"""Delivery channels: console, signed generic webhook, Slack incoming webhook, SMTP email.

Each channel's ``send`` raises :class:`DeliveryError` on failure; ``retryable``
says whether trying again can help (network errors, 5xx, 429) or not (other
4xx, refused login). Messages of these errors never contain URLs, tokens or
passwords: Slack webhook URLs are secrets too.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import sys
from collections.abc import Callable
from email.message import EmailMessage

import httpx

from pipeline.notify.message import Notification
from pipeline.notify.signing import signed_headers
from pipeline.settings import NotifierSettings


class DeliveryError(RuntimeError):
    def __init__(self, channel: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"notify.{channel}: {reason}")
        self.channel = channel
        self.retryable = retryable


class Channel:
    name = "channel"

    def send(self, notification: Notification) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class ConsoleChannel(Channel):
    """The local receiver: prints every notification (the CLI's own output)."""

    name = "console"

    def __init__(self, write: Callable[[str], object] | None = None) -> None:
        self._write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))

    def send(self, notification: Notification) -> None:
        rule = "-" * 72
        self._write(f"{rule}\n{notification.title}\n{notification.text}\n{rule}\n")


def _post(
    channel: str, client: httpx.Client, url: str, body: bytes, headers: dict[str, str]
) -> None:
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        # str(exc) may carry the URL; keep only the kind of failure.
        raise DeliveryError(
            channel, f"request failed ({type(exc).__name__})", retryable=True
        ) from None
    if response.status_code >= 300:
        retryable = response.status_code >= 500 or response.status_code in (408, 429)
        raise DeliveryError(channel, f"HTTP {response.status_code}", retryable=retryable)


class WebhookChannel(Channel):
    """POSTs :meth:`Notification.as_json`; signed with HMAC-SHA256 when a secret is set."""

    name = "webhook"

    def __init__(self, url: str, secret: str | None, timeout_seconds: float) -> None:
        self._url = url
        self._secret = secret
        self._client = httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.as_json(), sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "finsentry-notifier"}
        if self._secret:
            headers.update(signed_headers(self._secret, body))
        _post(self.name, self._client, self._url, body, headers)


class SlackChannel(Channel):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): ``{"text": ...}``."""

    name = "slack"

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self._url = url
        self._client = httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    def send(self, notification: Notification) -> None:
        text = f"*{notification.title}*\n```{notification.text}```"
        body = json.dumps({"text": text}).encode("utf-8")
        _post(self.name, self._client, self._url, body, {"Content-Type": "application/json"})


class EmailChannel(Channel):
    """Plain-text email over SMTP, with STARTTLS (verified) and login when configured."""

    name = "email"

    def __init__(self, settings: NotifierSettings) -> None:
        self._s = settings

    def send(self, notification: Notification) -> None:
        s = self._s
        message = EmailMessage()
        message["Subject"] = notification.title
        message["From"] = s.email_from
        message["To"] = ", ".join(s.email_to)
        message.set_content(notification.text + "\n")
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_seconds) as smtp:
                if s.smtp_starttls:
                    context = ssl.create_default_context(
                        cafile=str(s.smtp_cafile) if s.smtp_cafile else None
                    )
                    smtp.starttls(context=context)
                if s.smtp_username:
                    password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                    smtp.login(s.smtp_username, password)
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError:
            raise DeliveryError(self.name, "SMTP login refused", retryable=False) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError(self.name, "all recipients refused", retryable=False) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError(
                self.name, "server does not offer STARTTLS", retryable=False
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                self.name, f"SMTP failed ({type(exc).__name__})", retryable=True
            ) from None


def build_channels(
    settings: NotifierSettings, *, console_write: Callable[[str], object] | None = None
) -> dict[str, Channel]:
    """Every channel whose address is configured, by name."""
    channels: dict[str, Channel] = {}
    if settings.console:
        channels["console"] = ConsoleChannel(console_write)
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        channels["webhook"] = WebhookChannel(settings.webhook_url, secret, settings.timeout_seconds)
    if settings.slack_webhook_url:
        channels["slack"] = SlackChannel(
            settings.slack_webhook_url.get_secret_value(), settings.timeout_seconds
        )
    if settings.smtp_host and settings.email_to:
        channels["email"] = EmailChannel(settings)
    return channels
