"""Suite-wide test settings.

Hypothesis runs derandomized (fixed seeds) so CI is deterministic; set HYPOTHESIS_PROFILE=explore
for a longer, randomized run when hunting bugs locally.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=100, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REQUIRE_EXTERNAL = os.environ.get("POSFAULT_REQUIRE_EXTERNAL") == "1"


def require_tool(name: str) -> str:
    """Path of an external executable; skips locally when missing, fails under CI (.ci/run)."""
    path = shutil.which(name)
    if path is None:
        message = f"external tool {name!r} is not installed (scripts/test installs it)"
        if REQUIRE_EXTERNAL:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_path(env_var: str, what: str) -> str:
    """A path given by an environment variable that scripts/test sets (e.g. the pyiso8583 venv)."""
    value = os.environ.get(env_var)
    if not value or not os.path.exists(value):
        message = f"{what} not available (set {env_var}; scripts/test prepares it)"
        if REQUIRE_EXTERNAL:
            pytest.fail(message)
        pytest.skip(message)
    return value
