from __future__ import annotations

from pathlib import Path

import pytest

from syrcad.config.secrets import Secrets

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite tests/golden from the templates."
    )


@pytest.fixture
def fixed_secrets() -> Secrets:
    """Stable secrets, so rendered files can be compared byte for byte."""
    return Secrets(
        rasa_token="golden-rasa-token-0000",
        jwt_secret="golden-jwt-secret-0000",
        tracker_password="golden-tracker-pass-00",
        redis_password="golden-redis-pass-0000",
        stats_password="golden-stats-pass-0000",
    )
