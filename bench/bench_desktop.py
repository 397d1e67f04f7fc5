"""Desktop benchmark: offer.made published -> the pop-up visible in a real browser, and the size
of the app's JavaScript and CSS, gzipped.

Run: ``.venv/bin/python bench/bench_desktop.py [--offers 50]`` (after ``make install``, which
builds web/dist and installs Debian's chromium).

It finds (or starts) the local RabbitMQ and MongoDB-protocol server like the tests do, in a
virtual host and databases of its own (removed afterwards). One gateway serves the built app on
loopback; Chromium (the apt package, never downloaded) logs in as the demo agent ``alice``. Each
round publishes one ``offer.made`` for her on the bus and waits for the page to show that
offer's pop-up (a MutationObserver in the page notes the moment), then cancels it.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import support
import uvicorn
from playwright.async_api import async_playwright

from switchboard.contracts.routing import OfferCancelled, OfferMade
from switchboard.gateway.app import GatewaySettings, build

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "web" / "dist"

WAIT_FOR_POPUP = """(subject) => new Promise((resolve) => {
  const seen = () => [...document.querySelectorAll('[data-testid=offer-subject]')]
    .some((node) => node.textContent === subject);
  if (seen()) return resolve(Date.now());
  const watcher = new MutationObserver(() => {
    if (seen()) { watcher.disconnect(); resolve(Date.now()); }
  });
  watcher.observe(document.body, { childList: true, subtree: true, characterData: true });
})"""


def bundle_sizes() -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in sorted((DIST / "assets").glob("*")):
        if path.suffix in {".js", ".css"}:
            sizes[path.name] = len(gzip.compress(path.read_bytes(), compresslevel=9))
    return sizes


async def _bench(found: support.Servers, offers: int) -> list[float]:
    tag = found.tag
    settings = GatewaySettings(
        amqp_url=found.amqp_url,
        mongodb_url=found.mongodb_url,
        database_prefix=found.prefix,
        log_level="WARNING",
        log_format="console",
        gateway_users_file=REPO / "deploy" / "demo" / "gateway.json",
        password_time_cost=1,
        password_memory_kib=64,
        password_parallelism=1,
        live_snapshot_seconds=0.5,
        command_timeout_seconds=1.0,
        web_dist=DIST,
    )
    gateway = build(settings)
    server = uvicorn.Server(
        uvicorn.Config(gateway.api, host="127.0.0.1", port=0, log_config=None, access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    latencies: list[float] = []
    try:
        while not server.started:
            await asyncio.sleep(0.05)
            if serving.done():
                serving.result()  # it could not start: say why
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            await page.goto(base + "/")
            await page.get_by_label("Login").fill("alice")
            await page.get_by_label("Password").fill("alice-demo-pass")
            await page.get_by_role("button", name="Log in").click()
            await page.get_by_text("Live", exact=True).wait_for()
            await asyncio.sleep(1.0)  # the connect snapshot (no agent-state here) settles
            support.say(f"publishing {offers} offers")
            for i in range(offers):
                subject = f"bench offer {i}"
                shown = asyncio.ensure_future(page.evaluate(WAIT_FOR_POPUP, subject))
                await asyncio.sleep(0.05)  # the observer is in place
                offer = OfferMade(
                    offer_id=f"bench-{tag}-{i}",
                    interaction_id=f"case-{900000 + i}",
                    agent_id="alice",
                    channel="email",
                    service="support",
                    expires_at=datetime.now(UTC) + timedelta(seconds=60),
                    summary={"subject": subject, "customer": "Bench Customer"},
                )
                published = time.time() * 1000
                await gateway.bus.publish(offer)
                visible = float(await asyncio.wait_for(shown, 30))
                latencies.append(max(0.0, visible - published))
                await gateway.bus.publish(
                    OfferCancelled(
                        offer_id=offer.offer_id,
                        interaction_id=offer.interaction_id,
                        agent_id="alice",
                    )
                )
                await page.get_by_role("alertdialog").wait_for(state="hidden")
            await browser.close()
    finally:
        server.should_exit = True
        await serving
        support.say("cleaning up")
        await support.drop_databases(found.mongodb_url, settings.database_name("gateway"))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=50)
    args = parser.parse_args()
    if not (DIST / "index.html").is_file() or shutil.which("chromium") is None:
        print("skipped: needs web/dist (make install) and chromium (apt-get install chromium)")
        return
    sizes = bundle_sizes()
    with support.servers() as found:
        latencies = asyncio.run(_bench(found, args.offers))
    print(f"command: {support.command_line()}")
    print(
        support.latency_line(
            "offer.made published -> pop-up visible in Chromium", [ms / 1000 for ms in latencies]
        )
    )
    listed = ", ".join(f"{name} {size / 1024:.1f} KB" for name, size in sizes.items())
    print(f"app JS+CSS gzipped: {sum(sizes.values()) / 1024:.1f} KB in all ({listed})")


if __name__ == "__main__":
    main()
