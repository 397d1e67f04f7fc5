"""SB_OTLP_ENDPOINT: spans of a publish, its consumer and its MongoDB writes reach a real OTLP
receiver on loopback, as one trace; without the setting nothing is exported."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from switchboard.runtime.service import Runtime

from .test_bus import SCANS, ParcelScanned, Recorder, _count_is, _eventually


class Receiver:
    """An OTLP/HTTP trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope in resource.scope_spans:
                        received.extend((service, span) for span in scope.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()


async def test_spans_of_a_message_and_its_database_work_reach_the_collector(
    make_settings: Callable[..., Any], receiver: Receiver
) -> None:
    runtime = Runtime("kit", make_settings(otlp_endpoint=receiver.url))
    runtime.bus.consume(SCANS, ParcelScanned, Recorder(runtime))
    async with runtime.app:
        await runtime.bus.publish(ParcelScanned(parcel="T1"))
        await _eventually(lambda: _count_is(runtime, "T1", 1))
    # leaving the app shut the provider down, which exported what was batched
    spans = [span for service, span in receiver.spans if service == "switchboard-kit"]
    kinds = {span.kind for span in spans}
    assert Span.SPAN_KIND_PRODUCER in kinds and Span.SPAN_KIND_CONSUMER in kinds, spans
    [consumed] = [s for s in spans if s.kind == Span.SPAN_KIND_CONSUMER]
    producers = [s for s in spans if s.kind == Span.SPAN_KIND_PRODUCER]
    assert consumed.trace_id in {p.trace_id for p in producers}, "one trace across the broker"
    database = [
        s
        for s in spans
        if any(a.key == "db.system" and a.value.string_value == "mongodb" for a in s.attributes)
    ]
    assert any(s.trace_id == consumed.trace_id for s in database), [s.name for s in spans]


async def test_without_an_endpoint_nothing_is_traced(make_settings: Callable[..., Any]) -> None:
    runtime = Runtime("kit", make_settings())
    assert runtime.tracer_provider is None


async def test_the_gateways_http_requests_are_traced_by_route(
    make_settings: Callable[..., Any], receiver: Receiver
) -> None:
    import httpx

    from switchboard.gateway.app import GatewaySettings, build

    gateway = build(make_settings(GatewaySettings, otlp_endpoint=receiver.url))
    async with gateway.app:
        transport = httpx.ASGITransport(app=gateway.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            refused = await http.get("/cases/14355?token=secret")
    assert refused.status_code == 401
    servers = [
        span
        for service, span in receiver.spans
        if service == "switchboard-gateway" and span.kind == Span.SPAN_KIND_SERVER
    ]
    assert any(span.name == "GET /cases/{case_number}" for span in servers), servers
