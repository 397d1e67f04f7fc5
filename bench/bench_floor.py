"""The floor: a bare loop on the same servers, what every service's hop is compared with.

    python bench/bench_floor.py [--messages 400] [--prefetch 16] [--save FILE]

Consume with prefetch 16 -> one ``insert_one`` -> one confirmed persistent publish -> ack, on
the local RabbitMQ and MongoDB-protocol server (found or started like the tests do, a virtual
host and database of its own). The queue is filled first; the loop is timed until the last ack.
``make bench`` runs it first and hands the figure to every other bench (``--save``), so each
prints its ``x/floor`` ratio against the floor of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import support


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--save", type=Path, help="write the msg/s figure to this file")
    args = parser.parse_args()
    with support.servers() as found:
        rate = asyncio.run(
            support.measure_floor(
                found.amqp_url, found.mongodb_url, messages=args.messages, prefetch=args.prefetch
            )
        )
    print(f"command: {support.command_line()}")
    print(f"servers: {found.origin}")
    print(
        f"{args.messages} messages: consume (prefetch {args.prefetch}) -> insert_one -> "
        "confirmed publish -> ack; 1.00 database command and 1.00 publish per message"
    )
    print(f"floor = {rate:.1f} msg/s")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(f"{rate:.1f}\n")


if __name__ == "__main__":
    main()
