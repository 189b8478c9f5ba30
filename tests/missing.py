"""A test that cannot run here says why in one line: it skips, or fails under CI=true,
where everything the suite needs must be installed and allowed."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Skip (the whole module when called at its top), or fail under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)
