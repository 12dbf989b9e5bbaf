"""Shared fixtures. The Kafka broker fixture lives in tests/integration/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests import tests.helpers
    sys.path.insert(0, str(ROOT))
