"""Gateway action round trip: an agent's REST action to its answer and to its live-stream frame.

    python bench/bench_gateway_actions.py [--agents 20] [--rounds 5]

The gateway and agent-state as ``switchboard run --only gateway,agent_state`` starts them (each
its own process, free loopback ports, a virtual host and database prefix of its own).
``--agents`` agents log in through the gateway's API, open their live stream and make themselves
Ready; then each, all at once, alternates ``POST /me/not-ready`` and ``POST /me/ready``
``--rounds`` times, one action at a time. An action's round trip ends when its
``agent.state_changed`` frame (the state it asked for) reaches the agent's stream. Prints
actions/s, p50/p95/p99 from the request to the HTTP answer and to the frame, and last
``gateway_action/floor = 0.NN``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import support
import websockets

sys.path.insert(0, str(support.REPO / "tests" / "e2e"))
from stack import Stack

PASSWORD = "bench-agent-pass"
SERVICES = ["agent_state", "gateway"]


def write_people(folder: Path, agents: list[str]) -> dict[str, str]:
    """The agents as agent-state's profiles and the gateway's logins (cheap password hashing:
    log-ins are not what is measured)."""
    profiles = {
        "not_ready_reasons": ["Break"],
        "agents": [
            {"agent_id": a, "name": a, "teams": ["support"], "capacity": {"email": 1}}
            for a in agents
        ],
    }
    people = {
        "people": [
            {"id": a, "name": a, "role": "agent", "teams": ["support"], "password": PASSWORD}
            for a in agents
        ]
    }
    (folder / "agent_state.json").write_text(json.dumps(profiles))
    (folder / "gateway.json").write_text(json.dumps(people))
    return {
        "SB_AGENTS_FILE": str(folder / "agent_state.json"),
        "SB_GATEWAY_USERS_FILE": str(folder / "gateway.json"),
        "SB_PASSWORD_TIME_COST": "1",
        "SB_PASSWORD_MEMORY_KIB": "64",
        "SB_PASSWORD_PARALLELISM": "1",
        "SB_LOG_LEVEL": "WARNING",
        "SB_COMMAND_TIMEOUT_SECONDS": "60",
        "SB_LOGIN_ADDRESS_LIMIT": str(len(agents) + 50),
    }


class Desk:
    """One agent: an API session and a live stream, noting when each state's frame arrived."""

    def __init__(self, stack: Stack, agent_id: str) -> None:
        self.agent_id = agent_id
        self.http = httpx.AsyncClient(base_url=stack.url("gateway"), timeout=120)
        self.live_url = stack.url("gateway", "/me/live").replace("http", "ws")
        self.frames: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        self._socket: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def log_in(self) -> None:
        answer = await self.http.post(
            "/auth/login", json={"login": self.agent_id, "password": PASSWORD}
        )
        answer.raise_for_status()
        token = answer.json()["token"]
        self.http.headers["authorization"] = f"Bearer {token}"
        self._socket = await websockets.connect(
            self.live_url, additional_headers={"Authorization": f"Bearer {token}"}
        )
        self._reader = asyncio.create_task(self._read())
        await self.act("/me/log-in", {"initial_state": "ready"}, "ready")

    async def _read(self) -> None:
        async for raw in self._socket:
            frame = json.loads(raw)
            if frame.get("event") == "agent.state_changed":
                await self.frames.put((str(frame["data"]["state"]), time.monotonic()))

    async def act(self, path: str, body: dict[str, Any], state: str) -> tuple[float | None, float]:
        """One action; seconds to the HTTP answer (None: the gateway gave up waiting for
        agent-state, 504, which still carries it out) and to the frame with ``state``."""
        started = time.monotonic()
        answer = await self.http.post(path, json=body)
        answered: float | None = time.monotonic() - started
        if answer.status_code == 504:
            answered = None
        elif answer.status_code >= 400:
            raise RuntimeError(f"{self.agent_id}: {path} -> {answer.status_code} {answer.text}")
        while True:
            seen, at = await asyncio.wait_for(self.frames.get(), 300)
            if seen == state:
                return answered, at - started

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._socket is not None:
            await self._socket.close()
        await self.http.aclose()


async def run(found: support.Servers, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    floor = await support.floor_rate(found)
    agents = [f"bench-agent-{n:03d}" for n in range(args.agents)]
    stack = Stack(
        amqp_url=found.amqp_url,
        mongodb_url=found.mongodb_url,
        database_prefix=found.prefix,
        relay_port=0,
        log_path=support.REPO / ".local" / "bench" / "gateway-actions-stack.log",
        extra_env=write_people(folder, agents),
        only=SERVICES,
    )
    support.say(f"starting gateway and agent-state (logs: {stack.log_path})")
    await asyncio.to_thread(stack.start)
    desks = [Desk(stack, a) for a in agents]
    answers: list[float] = []
    frames: list[float] = []
    late: list[float] = []
    """Actions the gateway answered 504 (agent-state answered after its wait)."""

    async def work(desk: Desk) -> None:
        for _ in range(args.rounds):
            for path, body, state in (
                ("/me/not-ready", {"reason": "Break"}, "not_ready"),
                ("/me/ready", {}, "ready"),
            ):
                answer, frame = await desk.act(path, body, state)
                if answer is None:
                    late.append(frame)
                else:
                    answers.append(answer)
                frames.append(frame)

    try:
        support.say(f"{len(desks)} agents log in, open their live stream and make themselves Ready")
        for start in range(0, len(desks), 10):
            await asyncio.gather(*(d.log_in() for d in desks[start : start + 10]))
        support.say(f"{len(desks)} agents x {args.rounds} Not Ready/Ready rounds")
        started = time.monotonic()
        await asyncio.gather(*(work(d) for d in desks))
        seconds = time.monotonic() - started
    finally:
        # all at once: a socket's closing handshake may wait on a loaded gateway
        await asyncio.gather(*(d.close() for d in desks), return_exceptions=True)
        await asyncio.to_thread(stack.stop)
        await support.drop_databases(found.mongodb_url, *(f"{found.prefix}_{s}" for s in SERVICES))
    return {"floor": floor, "seconds": seconds, "answers": answers, "frames": frames, "late": late}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="Not Ready/Ready pairs per agent")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, support.servers() as found:
        result = asyncio.run(run(found, args, Path(folder)))
    actions = len(result["frames"])
    rate = actions / result["seconds"] if result["seconds"] else 0.0
    print(f"command: {support.command_line()}")
    print(f"servers: {found.origin}")
    print(f"agents: {args.agents}  actions: {actions}  in {result['seconds']:.1f} s")
    print(support.latency_line("request -> HTTP answer", result["answers"]))
    if result["late"]:
        print(f"answered 504 (agent-state later than the gateway's wait): {len(result['late'])}")
    print(support.latency_line("request -> frame on the live stream", result["frames"]))
    print(support.ratio_line("gateway_action", rate, result["floor"]))


if __name__ == "__main__":
    main()
