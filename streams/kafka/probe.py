"""Before a command talks to Kafka: can it, and if not, why, in one line.

Kafka clients report a mismatched listener badly. A SASL client at a PLAINTEXT
listener, a plaintext client at a TLS one, or a wrong password each surface as "no
broker available", a traceback from deep in the client, or a retry loop that hangs
for minutes. So every command first connects once, with a deadline, the way its
clients will (same protocol, TLS context and SASL credentials), and turns what went
wrong into a sentence that names the mismatch and the setting to change. A broker
that answers correctly costs one connection and one metadata request.

Blocks (plain sockets): call it before an event loop starts, or from a thread.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kafka.conn import BrokerConnection, ConnectionStates
from kafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)
from kafka.protocol.metadata import MetadataRequest

from streams.errors import BrokerError
from streams.settings import Settings

TIMEOUT = 8.0
"""Seconds for one bootstrap server: a broker that answers does in milliseconds."""

START_ONE = "start one (make kafka-start) or set TRIGGER_SANITY_BOOTSTRAP_SERVERS"


class _Connection(BrokerConnection):
    """Keeps why it closed: kafka-python logs it and connect_blocking says only False."""

    closed_by: BaseException | None = None
    closed_in: object = None  # the connection's state then

    def close(self, error: BaseException | None = None) -> Any:
        # the broker's reason over the dropped socket that follows it (or comes first)
        if error is not None and (
            self.closed_by is None or isinstance(self.closed_by, KafkaConnectionError)
        ):
            self.closed_by = error
            self.closed_in = self.state
        return super().close(error)


@contextmanager
def _quiet_client() -> Iterator[None]:
    """kafka-python logs each failed step at ERROR: the probe's one line says it all."""
    loggers = [logging.getLogger(n) for n in ("kafka.conn", "kafka.sasl", "kafka.sasl.scram")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def check_broker(settings: Settings, timeout: float = TIMEOUT) -> None:
    """Returns once one bootstrap server answers a metadata request with the settings'
    security; else raises ``BrokerError`` with the first server's reason."""
    reasons = []
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise BrokerError(f"TRIGGER_SANITY_BOOTSTRAP_SERVERS: {server!r} is not host:port")
        with _quiet_client():
            why = probe(settings, host.strip("[]"), int(port), timeout)
        if why is None:
            return
        reasons.append(why)
    raise BrokerError(reasons[0] if len(reasons) == 1 else " / ".join(reasons))


def probe(settings: Settings, host: str, port: int, timeout: float) -> str | None:
    """Why ``host:port`` cannot be used with these settings (None: it can)."""
    where = f"{host}:{port}"
    proto = settings.security_protocol
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"no Kafka broker answers at {where} ({exc.strerror or exc}): {START_ONE}"
    kw = settings.kafka_client_kwargs()
    del kw["bootstrap_servers"]
    conn = _Connection(
        host,
        port,
        socket.AF_UNSPEC,
        client_id=f"{settings.app_id}-probe",
        request_timeout_ms=int(timeout * 1000),
        api_version_auto_timeout_ms=int(timeout * 1000),
        **kw,
    )
    try:
        return _connected(conn, settings, where, timeout)
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the TLS certificate of {where} is not trusted ({exc.verify_message}): set "
            "TRIGGER_SANITY_SSL_CAFILE to the CA file that signed it"
        )
    except ssl.SSLError as exc:
        if _plaintext_answer(exc):
            return (
                f"{where} does not speak TLS, but TRIGGER_SANITY_SECURITY_PROTOCOL is {proto}: "
                "point TRIGGER_SANITY_BOOTSTRAP_SERVERS at the broker's SSL/SASL_SSL "
                "listener, or set the protocol to PLAINTEXT or SASL_PLAINTEXT"
            )
        return f"the TLS handshake with {where} failed: {exc}"
    except SaslAuthenticationFailedError as exc:
        return (
            f"SASL {settings.sasl_mechanism} authentication as {settings.sasl_username!r} "
            f"failed at {where}: the user name or password is wrong "
            f"(TRIGGER_SANITY_SASL_USERNAME / _PASSWORD; the broker said: {_said(exc)})"
        )
    except IllegalSaslStateError:
        return (
            f"{where} is not a SASL listener, but TRIGGER_SANITY_SECURITY_PROTOCOL is {proto}: "
            "point TRIGGER_SANITY_BOOTSTRAP_SERVERS at the SASL listener, or set the "
            "protocol to PLAINTEXT or SSL and unset TRIGGER_SANITY_SASL_MECHANISM"
        )
    except UnsupportedSaslMechanismError:
        return (
            f"{where} does not offer SASL {settings.sasl_mechanism}: its listener does not "
            f"enable {settings.sasl_mechanism}; set TRIGGER_SANITY_SASL_MECHANISM to one it does"
        )
    except KafkaError as exc:
        if conn.closed_in is ConnectionStates.AUTHENTICATING:
            # the broker closes right after its answer, and the client may see the
            # closed socket before it reads the answer: name both possible causes
            return (
                f"{where} closed the connection during SASL {settings.sasl_mechanism} "
                f"authentication as {settings.sasl_username!r}: its listener does not enable "
                f"{settings.sasl_mechanism}, or the user name or password is wrong "
                "(TRIGGER_SANITY_SASL_MECHANISM, _USERNAME, _PASSWORD)"
            )
        if proto.endswith("SSL") and "during handshake" in str(exc):
            return (
                f"{where} closed the TLS handshake (not a TLS listener?), but "
                f"TRIGGER_SANITY_SECURITY_PROTOCOL is {proto}: point "
                "TRIGGER_SANITY_BOOTSTRAP_SERVERS at the broker's SSL/SASL_SSL listener, or "
                "set the protocol to PLAINTEXT or SASL_PLAINTEXT"
            )
        return f"Kafka at {where} refused the connection ({type(exc).__name__}: {_said(exc)})"
    finally:
        conn.close()


def _connected(
    conn: BrokerConnection, settings: Settings, where: str, timeout: float
) -> str | None:
    """Connect (TLS, version check, SASL), then ask for metadata."""
    proto = settings.security_protocol
    deadline = time.monotonic() + timeout
    if not conn.connect_blocking(timeout):
        if not proto.endswith("SSL") and _speaks_tls(conn.host, conn.port, timeout):
            return (
                f"{where} is a TLS listener, but TRIGGER_SANITY_SECURITY_PROTOCOL is {proto}: "
                "set it to SSL or SASL_SSL (and TRIGGER_SANITY_SSL_CAFILE), or point "
                "TRIGGER_SANITY_BOOTSTRAP_SERVERS at a plaintext listener"
            )
        if isinstance(conn.closed_by, KafkaError):
            raise conn.closed_by
        return (
            f"{where} accepts connections but did not answer as a Kafka broker with "
            f"{proto} within {timeout:.0f} s"
        )
    future = conn.send(MetadataRequest[1](topics=[]))
    while not future.is_done and time.monotonic() < deadline:
        for response, fut in conn.recv():
            fut.success(response)
        if not future.is_done and conn.disconnected():
            break
        time.sleep(0.01)  # polling a non-blocking socket, bounded by the deadline
    if future.succeeded():
        return None
    if not proto.startswith("SASL_"):
        return (
            f"{where} closed the connection on a metadata request: it asks clients to "
            f"authenticate (a SASL listener), but TRIGGER_SANITY_SECURITY_PROTOCOL is {proto}: "
            "set SASL_PLAINTEXT or SASL_SSL with TRIGGER_SANITY_SASL_MECHANISM, _USERNAME and "
            "_PASSWORD"
        )
    return f"{where} did not answer a metadata request within {timeout:.0f} s"


def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Does the listener complete a TLS handshake (certificate not checked: only the
    protocol is in question)?"""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def _plaintext_answer(exc: ssl.SSLError) -> bool:
    """OpenSSL's words for a peer that answered a ClientHello with something not TLS."""
    text = str(exc)
    return any(w in text for w in ("WRONG_VERSION_NUMBER", "record layer failure", "packet length"))


def _said(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__
