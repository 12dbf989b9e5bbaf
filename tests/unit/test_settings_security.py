"""Security settings that cannot work together are refused when the settings are read,
in one line a field, before any client meets a broker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.settings import describe_invalid, settings_from_env

P = "TRIGGER_SANITY_"
SCRAM = {f"{P}SASL_MECHANISM": "SCRAM-SHA-512", f"{P}SASL_USERNAME": "u", f"{P}SASL_PASSWORD": "pw"}


def _read(env: dict[str, str]) -> str:
    """What the user is told, as ``load_settings`` words it."""
    try:
        settings_from_env(env)
    except ValidationError as exc:
        return describe_invalid(exc)
    return ""


@pytest.mark.parametrize(
    ("scenario", "env", "says"),
    [
        ("a SASL mechanism with the protocol left at PLAINTEXT", SCRAM,
         "needs security_protocol SASL_SSL or SASL_PLAINTEXT (it is PLAINTEXT"),
        ("a SASL mechanism over plain TLS", {**SCRAM, f"{P}SECURITY_PROTOCOL": "SSL"},
         "(it is SSL"),
        ("SASL without a mechanism", {f"{P}SECURITY_PROTOCOL": "SASL_SSL"},
         "needs sasl_mechanism"),
        ("SASL without a password",
         {f"{P}SECURITY_PROTOCOL": "SASL_PLAINTEXT", f"{P}SASL_MECHANISM": "PLAIN",
          f"{P}SASL_USERNAME": "u"},
         "needs sasl_username and sasl_password"),
        ("a CA file with a plaintext protocol", {f"{P}SSL_CAFILE": __file__},
         "ssl_cafile is set but security_protocol PLAINTEXT does not use TLS"),
        ("a CA file that is not there",
         {f"{P}SECURITY_PROTOCOL": "SSL", f"{P}SSL_CAFILE": "/nowhere/ca.pem"},
         "ssl_cafile: no such file /nowhere/ca.pem"),
    ],
)  # fmt: skip
def test_security_settings_that_cannot_work_are_refused(
    scenario: str, env: dict[str, str], says: str
) -> None:
    said = _read(env)
    assert says in said, (scenario, said)
    assert "pw" not in said.replace("password", ""), scenario  # the secret is never echoed


@pytest.mark.parametrize(
    ("scenario", "env", "protocol", "has_context"),
    [
        ("plaintext by default", {}, "PLAINTEXT", False),
        ("SCRAM over TLS with the system's CAs", {**SCRAM, f"{P}SECURITY_PROTOCOL": "SASL_SSL"},
         "SASL_SSL", True),
        ("SCRAM without TLS", {**SCRAM, f"{P}SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
         "SASL_PLAINTEXT", False),
        ("TLS only", {f"{P}SECURITY_PROTOCOL": "SSL"}, "SSL", True),
    ],
)  # fmt: skip
def test_every_client_gets_the_same_protocol_and_tls_context(
    scenario: str, env: dict[str, str], protocol: str, has_context: bool
) -> None:
    s = settings_from_env(env)
    kw = s.kafka_client_kwargs()
    assert kw["security_protocol"] == protocol, scenario
    assert ("ssl_context" in kw) is has_context, scenario
    assert s.kafka_producer_kwargs()["security_protocol"] == protocol
    if has_context:
        ctx = kw["ssl_context"]
        assert ctx.check_hostname and ctx.verify_mode.name == "CERT_REQUIRED", scenario
    if "SASL" in protocol:
        assert kw["sasl_plain_password"] == "pw" and kw["sasl_mechanism"] == "SCRAM-SHA-512"


def test_faust_gets_sasl_over_tls_when_both_are_set() -> None:
    import faust

    from streams.worker.app import app_config

    s = settings_from_env({**SCRAM, f"{P}SECURITY_PROTOCOL": "SASL_SSL"})
    creds = app_config(s)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.ssl_context is not None and str(creds.protocol).endswith("SASL_SSL")
    tls = app_config(settings_from_env({f"{P}SECURITY_PROTOCOL": "SSL"}))["broker_credentials"]
    assert isinstance(tls, faust.SSLCredentials)
