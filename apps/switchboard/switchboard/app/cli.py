"""The ``switchboard`` command: run everything, start local servers, or serve one service."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from switchboard.app.localstack import REPO_ROOT, BackendUnavailable, backends
from switchboard.app.supervisor import FIRST_HTTP_PORT, installed_services, supervise
from switchboard.runtime.logs import configure_logging, without_password
from switchboard.runtime.service_token import new_service_token

DEMO_DIR = REPO_ROOT / "deploy" / "demo"

DEMO_SETTINGS = {
    # Each service seeds its own collections from its demo file when they are empty.
    "SB_MAILBOXES_FILE": "ingestion.json",
    "SB_THREADING_CONFIG_FILE": "threading.json",
    "SB_AGENTS_FILE": "agent_state.json",
    "SB_ROUTING_CONFIG_FILE": "routing.json",
    "SB_CAMPAIGNS_FILE": "dialer.json",
    "SB_REPORTING_CONFIG_FILE": "reporting.json",
    "SB_GATEWAY_USERS_FILE": "gateway.json",
}


def _demo_env() -> dict[str, str]:
    return {
        key: str(DEMO_DIR / name)
        for key, name in DEMO_SETTINGS.items()
        if key not in os.environ and (DEMO_DIR / name).exists()
    }


def _service_token_env() -> dict[str, str]:
    """One service token for this run when none is configured: every service asks for it on
    its HTTP API and sends it to the others."""
    if os.environ.get("SB_SERVICE_TOKEN") or os.environ.get("SB_SERVICE_TOKEN_FILE"):
        return {}
    return {"SB_SERVICE_TOKEN": new_service_token()}


def _token_source(env: dict[str, str]) -> str:
    if "SB_SERVICE_TOKEN" in env:
        return "a service token made for this run (not printed)"
    if os.environ.get("SB_SERVICE_TOKEN_FILE"):
        return f"the service token in {os.environ['SB_SERVICE_TOKEN_FILE']}"
    return "the service token of SB_SERVICE_TOKEN"


def run_all(args: argparse.Namespace) -> int:
    configure_logging("supervisor", log_format="console")
    services = args.only.split(",") if args.only else installed_services()
    try:
        with backends(REPO_ROOT / ".local", use_containers=False) as found:
            env = {
                "SB_AMQP_URL": found.amqp_url,
                "SB_MONGODB_URL": found.mongodb_url,
                "SB_DEVELOPMENT": os.environ.get("SB_DEVELOPMENT", "true"),
                **_demo_env(),
                **_service_token_env(),
            }
            ports = {
                s: int(os.environ.get(f"SB_{s.upper()}_HTTP_PORT", FIRST_HTTP_PORT + i))
                for i, s in enumerate(services)
            }
            print("Switchboard is starting:", flush=True)
            print(f"  RabbitMQ   {found.origin.get('amqp')}  (management: http://127.0.0.1:15672)")
            mongodb = without_password(found.mongodb_url)
            print(f"  MongoDB    {found.origin.get('mongodb')}  {mongodb}")
            for service, port in ports.items():
                print(f"  {service:<12} http://127.0.0.1:{port}/metrics  /health/ready")
            if "ingestion" in services:
                print(f"  SMTP in    127.0.0.1:{os.environ.get('SB_SMTP_PORT', '2525')}")
            if "gateway" in services:
                print(f"  Agent API  http://127.0.0.1:{ports['gateway']}/docs")
            print(f"  Services   their HTTP APIs ask for {_token_source(env)}")
            print("Press Ctrl-C to stop everything.", flush=True)
            return supervise(services, env)
    except BackendUnavailable as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2


def start_services(args: argparse.Namespace) -> int:
    try:
        with backends(REPO_ROOT / ".local", use_containers=False) as found:
            print(f"export AMQP_URL={found.amqp_url}")
            print(f"export MONGODB_URL={found.mongodb_url}")
    except BackendUnavailable as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    return 0


def serve_one(args: argparse.Namespace) -> int:
    importlib.import_module(f"switchboard.{args.service}.app").main()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start local servers and every service (make run)")
    run.add_argument("--only", help="comma-separated services to run")
    run.set_defaults(func=run_all)
    services = commands.add_parser("services", help="find or start RabbitMQ and FerretDB")
    services.set_defaults(func=start_services)
    serve = commands.add_parser("serve", help="run one service in this process")
    serve.add_argument("service", choices=installed_services() or ["none"])
    serve.set_defaults(func=serve_one)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
