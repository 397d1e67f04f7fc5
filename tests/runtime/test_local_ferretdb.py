"""The local FerretDB: it starts over data a killed server left half-written, reports the build
it is (the harness reuses no other), and finds a document by ``_id`` (a string or a number)
through the ``_id`` index rather than by reading the whole collection."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bson import Int64
from pymongo import MongoClient

from switchboard.app.localstack import FERRETDB_SCRIPT, _refuse_another_build


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


def _start(data_dir: Path) -> str:
    started = subprocess.run(
        ["bash", str(FERRETDB_SCRIPT), "start", str(data_dir), str(_free_port())],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def test_a_database_left_empty_or_a_stray_wal_does_not_stop_the_server(data_dir: Path) -> None:
    (data_dir / "killed_while_creating.sqlite").write_bytes(b"\0" * 4096)
    (data_dir / "dropped_while_killed.sqlite-wal").write_bytes(b"\0" * 8192)
    (data_dir / "dropped_while_killed.sqlite-shm").write_bytes(b"\0" * 8192)

    url = _start(data_dir)

    with MongoClient(url, serverSelectionTimeoutMS=10_000) as client:
        client["kept"]["cases"].insert_one({"_id": "C-1"})
        assert client["kept"]["cases"].find_one({"_id": "C-1"}) == {"_id": "C-1"}
    assert not (data_dir / "dropped_while_killed.sqlite-wal").exists()


def test_a_read_by_id_uses_the_id_index(data_dir: Path) -> None:
    """Every compare-and-set in routing reads and writes by ``_id``: without the index each one
    reads the whole collection (FerretDB 1.24 as released; the launcher patches it)."""
    with MongoClient(_start(data_dir), serverSelectionTimeoutMS=10_000) as client:
        work = client["routing"]["work"]
        work.insert_many([{"_id": f"I-{n}", "state": "waiting"} for n in range(50)])

        plan = client["routing"].command("explain", {"find": "work", "filter": {"_id": "I-7"}})

        steps = plan["queryPlanner"]["Plan"]
        assert any("USING INDEX" in step for step in steps), steps
        assert work.find_one({"_id": "I-7"}) == {"_id": "I-7", "state": "waiting"}


@pytest.mark.parametrize("case_number", [7, Int64(2**40), 7.0], ids=["int", "long", "double"])
def test_a_read_by_a_numeric_id_uses_the_id_index(data_dir: Path, case_number: object) -> None:
    """Threading keys cases by case number: FerretDB 1.24 as released reads the whole collection
    for a numeric ``_id`` (``04-int-id-pushdown`` looks it up by the index), also when the
    filter holds a condition besides the ``_id``, as every conditional write does."""
    with MongoClient(_start(data_dir), serverSelectionTimeoutMS=10_000) as client:
        cases = client["threading"]["cases"]
        cases.insert_many([{"_id": n, "state": "open"} for n in range(1, 50)])
        cases.insert_one({"_id": Int64(2**40), "state": "open"})

        plan = client["threading"].command(
            "explain", {"find": "cases", "filter": {"_id": case_number, "state": "open"}}
        )

        steps = plan["queryPlanner"]["Plan"]
        assert any("USING INDEX" in step for step in steps), steps
        found = cases.find_one({"_id": case_number, "state": "open"})
        assert found is not None and found["_id"] == case_number


def test_the_local_build_reports_its_patches_and_the_harness_accepts_it(data_dir: Path) -> None:
    """The harness refuses a server on the local port that reports another build (an older one
    or stock FerretDB, without single-document atomicity); this build it reuses."""
    url = _start(data_dir)
    wanted = subprocess.run(
        ["bash", str(FERRETDB_SCRIPT), "version"], capture_output=True, text=True, check=True
    ).stdout.strip()

    with MongoClient(url, serverSelectionTimeoutMS=10_000) as client:
        running = client.admin.command("buildInfo")["ferretdbVersion"]

    assert running == wanted
    assert "02-write-lock" in wanted
    _refuse_another_build(url)
