"""A production threading service refuses to start on the development thread key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.threading.app import ThreadingSettings


def _production_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in {"SB_DEVELOPMENT", "SB_THREAD_KEY", "SB_THREAD_KEY_FILE"}
    }


def test_the_service_refuses_to_start_without_a_key_and_names_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard.app.cli", "serve", "threading"],
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "SB_THREAD_KEY" in done.stderr
    assert "SB_DEVELOPMENT" in done.stderr


def test_the_key_comes_from_its_file_and_the_development_flag_allows_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("SB_DEVELOPMENT", "SB_THREAD_KEY", "SB_THREAD_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="SB_THREAD_KEY"):
        ThreadingSettings()
    key_file = tmp_path / "thread_key"
    key_file.write_text("a-key-from-a-secret\n")
    monkeypatch.setenv("SB_THREAD_KEY_FILE", str(key_file))
    settings = ThreadingSettings()
    assert settings.thread_key is not None
    assert settings.thread_key.get_secret_value() == "a-key-from-a-secret"
    monkeypatch.delenv("SB_THREAD_KEY_FILE")
    monkeypatch.setenv("SB_DEVELOPMENT", "true")
    assert ThreadingSettings().thread_key is None
