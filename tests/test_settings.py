"""Settings from the environment: defaults, and a clear refusal of what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobengine.errors import ConfigurationError
from jobengine.settings import Settings


def test_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    base = {"JOBENGINE_HOME": str(tmp_path)}
    assert Settings.from_env(base).database_url == f"sqlite:///{tmp_path / 'jobengine.db'}"
    with pytest.raises(ConfigurationError, match="time zone"):
        Settings.from_env({**base, "JOBENGINE_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigurationError, match="VISIBILITY"):
        Settings.from_env({**base, "JOBENGINE_TASK_TIME_LIMIT": "9000"})
    with pytest.raises(ConfigurationError, match="not a number"):
        Settings.from_env({**base, "JOBENGINE_ETA_HORIZON": "soon"})
    assert Settings.from_env({**base, "JOBENGINE_STAGE_AHEAD": "0"}).stage_ahead == 0  # off
    with pytest.raises(ConfigurationError, match="STAGE_AHEAD"):  # a staged fire is no misfire
        Settings.from_env({**base, "JOBENGINE_STAGE_AHEAD": "90"})
    assert Settings.from_env(base).event_batch == 0.05
    assert Settings.from_env({**base, "JOBENGINE_EVENT_BATCH_SECONDS": "0"}).event_batch == 0
    with pytest.raises(ConfigurationError, match="EVENT_BATCH"):  # Flower would lag behind
        Settings.from_env({**base, "JOBENGINE_EVENT_BATCH_SECONDS": "61"})
