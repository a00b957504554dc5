"""Shared pytest options and fixtures.

`--update-golden` rewrites golden files instead of comparing against them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Registered here, not imported by each test module, so that one session run serves every file
# that asks for it (a session fixture imported into two modules runs once per module).
from tiny_data_fixtures import tiny_local_data  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files under tests/golden/ instead of comparing")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
