"""The command adapters' unit tests run without a broker: each Kafka command's first
step, the broker probe (streams.kafka.probe), is tested against the real broker in
tests/integration/test_security.py; here the service functions behind it are given."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_broker_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.kafka import probe

    monkeypatch.setattr(probe, "check_broker", lambda settings, timeout=0.0: None)
