"""Fail when a module of libs/ or services/ is longer than LIMIT lines (`make lint` runs this).

A long module mixes concerns; split it along them. ALLOWED names today's long modules with a
ceiling each: they may not grow past it, and an entry must go once its module is short (or
gone), so the list only shrinks.
"""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 550
ROOTS = ("libs", "services")
ALLOWED: dict[str, int] = {}


def main(repo: Path) -> int:
    problems = []
    for root in ROOTS:
        for path in sorted((repo / root).rglob("*.py")):
            name = path.relative_to(repo).as_posix()
            lines = len(path.read_text(encoding="utf-8").splitlines())
            ceiling = ALLOWED.get(name, LIMIT)
            if lines > ceiling:
                problems.append(f"{name}: {lines} lines, more than {ceiling}: split it")
    for name in ALLOWED:
        path = repo / name
        if not path.exists() or len(path.read_text(encoding="utf-8").splitlines()) <= LIMIT:
            problems.append(f"{name}: short now (or gone): remove it from ALLOWED in {__file__}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent.parent))
