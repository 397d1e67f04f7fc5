"""OpenTelemetry traces across services: off unless ``SB_OTLP_ENDPOINT`` names a collector.

With an endpoint, each process exports its spans over OTLP/HTTP: FastStream's telemetry
middleware on every consumer and publisher (the trace context travels in the message headers,
so one customer's mail is one trace across services), PyMongo's commands, and the gateway's
HTTP requests (FastAPI). The correlation id stays in the logs as before.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_pymongo_owner: TracerProvider | None = None


def tracer_provider(service: str, endpoint: str | None) -> TracerProvider | None:
    """The process's tracer provider, or None when tracing is off (no endpoint)."""
    if not endpoint:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"switchboard-{service}"}))
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # PyMongo's command listeners are process-wide: the first provider of the process gets them.
    global _pymongo_owner
    if _pymongo_owner is None:
        PymongoInstrumentor().instrument(tracer_provider=provider)
        _pymongo_owner = provider
    return provider


def stop_tracing(provider: TracerProvider) -> None:
    """Export what is batched and let go of PyMongo's listeners if this provider held them."""
    global _pymongo_owner
    provider.shutdown()
    if _pymongo_owner is provider:
        PymongoInstrumentor().uninstrument()
        _pymongo_owner = None
