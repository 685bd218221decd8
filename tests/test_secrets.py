"""No credentials in the repository, none in settings' reprs, none in logs.

The tree scan reads every tracked file (``git ls-files``) and looks for private
keys, cloud and chat tokens, credentials in URLs and password-like literals.
What it may find and ignore is :data:`ALLOWED` below, each entry with its
reason; docs/reliability.md ("Secrets") describes the rules.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

import pipeline.settings as settings_module
from pipeline.kafka_security import guard_logs
from pipeline.settings import REPO_ROOT, KafkaSettings, ServiceSettings, is_secret, service_settings_classes

# -- detectors ----------------------------------------------------------------------

#: name -> pattern. A match is a finding unless the matched text is an obvious dummy.
DETECTORS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "aws_access_key_id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "aws_secret_access_key": re.compile(
        r"(?i)aws_secret_access_key\s*[=:]\s*[\"']?[A-Za-z0-9/+=]{40}\b"),
    "slack_token": re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}"),
    "slack_webhook": re.compile(
        r"https://hooks\.slack\.com/(?:services|workflows)/T[A-Z0-9]+/[A-Z0-9]+/[A-Za-z0-9]{16,}"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "grafana_token": re.compile(
        r"\b(?:glsa_[A-Za-z0-9]{32}_[0-9a-f]{8}|eyJrIjoi[A-Za-z0-9+/]{30,})"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    "url_credentials": re.compile(
        r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"<>{}]+:(?P<value>[^\s/@'\"<>{}]{3,})@[^\s/'\"]+"),
    "password_literal": re.compile(
        r"(?i)\b[\w.-]*(?:password|passwd|secret|token|api_?key)[\w.-]*[\"']?\s*[:=]\s*"
        r"(?:SecretStr\()?[\"'](?P<value>[^\"'\s]{6,})[\"']"),
}

#: Text that marks a value as a placeholder, not a credential.
DUMMY = re.compile(
    r"(?i)dummy|example|fake|placeholder|changeme|change-me|redacted|sample|wrong|not-the|"
    r"hunter2|xxx|\*\*\*|\$\{|\$\(|<[a-z_-]+>|^(?:pw|password|secret|token|user|pass)$|"
    r"from-the-|from-a-|canary|test"
)


@dataclass(frozen=True)
class Allowed:
    path: str
    detector: str
    reason: str


#: The only findings the scan accepts, each with its reason, e.g.
#: ``Allowed("docs/deploy.md", "url_credentials", "the documented example DSN")``.
#: Empty today; keep it short and prefer fixing the file. An entry that stops
#: matching fails the scan, so the list cannot rot.
ALLOWED: tuple[Allowed, ...] = ()

MAX_SCANNED_BYTES = 5_000_000


def random_looking(value: str) -> bool:
    """Machine-made, like a real token: long, mixed case and digits, high entropy."""
    if len(value) < 20 or not all(re.search(c, value) for c in ("[A-Z]", "[a-z]", "[0-9]")):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5


def find_secrets(text: str, *, in_tests: bool = False) -> list[tuple[str, str]]:
    """(detector, matched text) for every credential-looking string in ``text``.

    Tests need credentials to test authentication: under tests/, a password-like
    literal counts only when it looks machine-made (:func:`random_looking`).
    """
    found = []
    for name, pattern in DETECTORS.items():
        for match in pattern.finditer(text):
            value = match.groupdict().get("value") or match.group(0)
            if DUMMY.search(value) or (name == "password_literal" and "{" in value):
                continue
            if in_tests and name == "password_literal" and not random_looking(value):
                continue
            found.append((name, match.group(0)))
    return found


def _tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True,
                         check=True).stdout
    return [REPO_ROOT / name for name in out.decode("utf-8").split("\0") if name]


# -- the scan -------------------------------------------------------------------------

FORBIDDEN_FILES = re.compile(
    r"(?:^|/)(?:\.env(?:\..+)?|id_(?:rsa|dsa|ecdsa|ed25519)|.*\.(?:pem|key|p12|pfx|jks|keystore)|"
    r"credentials(?:\.json)?|\.netrc|\.pgpass)$"
)


def test_no_credential_files_are_tracked():
    tracked = [str(p.relative_to(REPO_ROOT)) for p in _tracked_files()]
    assert tracked, "git ls-files listed nothing"
    assert [p for p in tracked if FORBIDDEN_FILES.search(p)] == []


def test_the_tracked_tree_holds_no_credentials():
    allowed = {(a.path, a.detector) for a in ALLOWED}
    findings, used = [], set()
    for path in _tracked_files():
        try:
            data = path.read_bytes()[:MAX_SCANNED_BYTES]
        except (FileNotFoundError, IsADirectoryError):
            continue  # deleted in the working tree, or a submodule
        if b"\0" in data[:8192]:
            continue  # binary
        relative = str(path.relative_to(REPO_ROOT))
        text = data.decode("utf-8", "replace")
        for detector, match in find_secrets(text, in_tests=relative.startswith("tests/")):
            if (relative, detector) in allowed:
                used.add((relative, detector))
            else:
                findings.append(f"{relative}: {detector}: {match[:60]}")
    assert findings == [], "credentials in tracked files:\n" + "\n".join(findings)
    assert allowed - used == set(), "ALLOWED entries that match nothing any more: remove them"


def _sample(*parts: str) -> str:
    # Built at run time so that this file never holds a real-looking credential.
    return "".join(parts)


@pytest.mark.parametrize(("detector", "text"), [
    ("private_key", _sample("-----BEGIN ", "RSA PRIVATE KEY-----\nMIIE")),
    ("private_key", _sample("-----BEGIN ", "OPENSSH PRIVATE KEY-----")),
    ("aws_access_key_id", _sample("key = AKIA", "Q3ZMJ7RB2XW4NHKT")),
    ("aws_secret_access_key", _sample("aws_secret_access_key = ", "k" * 20, "9/Qz" * 5)),
    ("slack_token", _sample("xoxb", "-1234567890-abcdefghijkl")),
    ("slack_webhook", _sample("https://hooks.slack.com/services/", "T0AB12CD3/B0CD45EF6/",
                              "q8Wm2Lr5Tz1Nv7Kp4Hs9Yd3F")),
    ("github_token", _sample("ghp_", "aB3" * 12)),
    ("url_credentials", _sample("postgresql://finsentry:", "Zq8-mR2vT5", "@db.internal/labels")),
    ("password_literal", _sample('smtp_password = "', "Zq8mR2vT5", '"')),
    ("password_literal", _sample("webhook_secret: '", "4f9a1c0be2", "'")),
    ("password_literal", _sample('"api_key": "', "c0ffee4242beef", '"')),
])
def test_detectors_find_real_looking_credentials(detector, text):
    assert detector in {name for name, _ in find_secrets(text)}


@pytest.mark.parametrize("text", [
    'password: SecretStr | None = None',
    'sasl_password="not-the-password"',
    "postgresql+psycopg://user:pw@host/db",
    'token = "${GRAFANA_TOKEN}"',
    'smtp_password = "<your-password>"',
    "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
    'secret_ref = f"${{file:{path}:password}}"',
    "max_tokens: int | None = Field(default=None, ge=8)",
])
def test_detectors_leave_placeholders_alone(text):
    assert find_secrets(text) == []


def test_tests_may_hold_readable_dummy_passwords_but_not_real_looking_ones():
    assert find_secrets('SECRET = "s3cr3t-hmac-key"', in_tests=True) == []
    assert find_secrets('SECRET = "s3cr3t-hmac-key"') != []
    real = _sample('token = "', "q8Wm2Lr5Tz1Nv7Kp4Hs9Yd3F", '"')
    assert find_secrets(real, in_tests=True) != []


# -- settings and logs ----------------------------------------------------------------

def _service_settings_classes() -> list[type[ServiceSettings]]:
    """The project's own settings classes (not ones that tests define)."""
    return [cls for cls in service_settings_classes() if cls.__module__ == settings_module.__name__]


SECRET_FIELDS = [
    (cls, name) for cls in _service_settings_classes()
    for name, field in cls.model_fields.items() if is_secret(field.annotation)
]
SECRET_NAME = re.compile(r"(?:^|_)(?:password|passwd|secret|token|api_key|private_key|"
                         r"credentials?)(?:$|_)|^slack_webhook_url$|^database_url$")


def test_every_credential_setting_is_a_secret_str():
    plain = [f"{cls.__name__}.{name}" for cls in _service_settings_classes()
             for name, field in cls.model_fields.items()
             if SECRET_NAME.search(name) and not is_secret(field.annotation)]
    assert SECRET_FIELDS, "found no SecretStr fields at all"
    assert plain == []


@pytest.mark.parametrize(("cls", "field"), SECRET_FIELDS,
                         ids=[f"{c.__name__}.{f}" for c, f in SECRET_FIELDS])
def test_secret_settings_never_show_in_reprs_dumps_or_logs(cls, field, caplog):
    canary = "canary-Zq8mR2vT5-do-not-print"
    try:
        instance = cls(**{field: canary})
    except ValueError:  # another field's validator objects to the defaults in this env
        instance = cls.model_construct(**{field: SecretStr(canary)})
    assert getattr(instance, field).get_secret_value() == canary
    caplog.set_level(logging.DEBUG)
    logging.getLogger("finsentry.test").info("settings: %s %r", instance, instance)
    for shown in (repr(instance), str(instance), instance.model_dump_json(),
                  str(instance.model_dump(mode="json")), str(instance.model_dump()), caplog.text):
        assert canary not in shown


def test_kafka_clients_mask_their_secrets_in_kafka_python_logs(caplog):
    settings = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                             sasl_username="finsentry", sasl_password="canary-Pw-4f9a1c0be2")
    guard_logs(settings)
    caplog.set_level(logging.DEBUG)
    # CLI tests run `finsentry`'s callback in-process, which quiets the "kafka" logger.
    caplog.set_level(logging.DEBUG, logger="kafka")
    # What kafka-python's protocol parser logs when it sends a PLAIN authentication.
    logging.getLogger("kafka.protocol.parser").debug(
        "Sending request %d %s", 3, "SaslAuthenticateRequest(auth_bytes=b'finsentry\\x00finsentry"
        "\\x00canary-Pw-4f9a1c0be2')")
    logging.getLogger("kafka.protocol.parser").debug("Send: %r", b"\x00\x05canary-Pw-4f9a1c0be2")
    assert caplog.records and "canary-Pw-4f9a1c0be2" not in caplog.text
    assert "**********" in caplog.text
