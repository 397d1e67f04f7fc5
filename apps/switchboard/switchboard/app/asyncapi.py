"""Write the AsyncAPI document of every installed service (``make docs``).

FastStream's own generator produces each document from the service's real wiring; because the
runtime validates message bodies itself, the payload of every consumed queue is then filled in
from its contract's JSON schema.
"""

from __future__ import annotations

import importlib
import json
import sys
import typing
from pathlib import Path
from typing import Any

from switchboard.app.supervisor import installed_services
from switchboard.runtime.service import Runtime


def build_runtime(service: str) -> Runtime:
    """The service's runtime with default settings (nothing is connected by building it)."""
    module = importlib.import_module(f"switchboard.{service}.app")
    settings_type = next(iter(typing.get_type_hints(module.build).values()))
    runtime: Runtime = module.build(settings_type(log_format="json"))
    return runtime


def document(runtime: Runtime) -> dict[str, Any]:
    spec: dict[str, Any] = runtime.app.schema.to_specification().to_jsonable()
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for channel, model in runtime.bus.consumers.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        for key, message in components.get("messages", {}).items():
            if key.startswith(f"{channel}:"):
                message["payload"] = {"$ref": f"#/components/schemas/{model.__name__}"}
                message["name"] = model.NAME
                message["title"] = model.NAME
    if "EmptyPayload" not in json.dumps(components.get("messages", {})):
        schemas.pop("EmptyPayload", None)
    return spec


def main(out_dir: str) -> int:
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    for service in installed_services():
        path = target / f"{service}.json"
        path.write_text(json.dumps(document(build_runtime(service)), indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/asyncapi"))
