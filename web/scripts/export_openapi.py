"""Write the gateway's OpenAPI document (the web app's types are generated from it).

Builds the FastAPI app as the gateway does, without starting it: no broker, no database.
Usage: python web/scripts/export_openapi.py web/openapi.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from switchboard.gateway.app import GatewaySettings, build


def main() -> None:
    runtime = build(GatewaySettings(web_dist=None))
    document = json.dumps(runtime.api.openapi(), indent=1, sort_keys=True) + "\n"
    Path(sys.argv[1]).write_text(document, encoding="utf-8")


if __name__ == "__main__":
    main()
