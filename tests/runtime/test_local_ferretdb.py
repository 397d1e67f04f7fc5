"""The local FerretDB launcher starts over data a killed server left half-written."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from switchboard.runtime.localstack import FERRETDB_SCRIPT


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("go") is None and not Path.home().joinpath(".cache/switchboard").exists():
        pytest.skip("no Go toolchain nor cached FerretDB: the local path is not in use here")
    yield tmp_path
    subprocess.run(["bash", str(FERRETDB_SCRIPT), "stop", str(tmp_path)], check=False)


def test_a_database_left_empty_or_a_stray_wal_does_not_stop_the_server(data_dir: Path) -> None:
    (data_dir / "killed_while_creating.sqlite").write_bytes(b"\0" * 4096)
    (data_dir / "dropped_while_killed.sqlite-wal").write_bytes(b"\0" * 8192)
    (data_dir / "dropped_while_killed.sqlite-shm").write_bytes(b"\0" * 8192)
    port = _free_port()

    started = subprocess.run(
        ["bash", str(FERRETDB_SCRIPT), "start", str(data_dir), str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert started.returncode == 0, started.stderr
    with MongoClient(started.stdout.strip(), serverSelectionTimeoutMS=10_000) as client:
        client["kept"]["cases"].insert_one({"_id": "C-1"})
        assert client["kept"]["cases"].find_one({"_id": "C-1"}) == {"_id": "C-1"}
    assert not (data_dir / "dropped_while_killed.sqlite-wal").exists()
