"""Put the benchmark results (``benchmarks/results/*.json``, written by the benchmark scripts) into the docs.

Each ``<!-- results: NAME I -->`` ... ``<!-- /results -->`` block of ``docs/*.md`` becomes table ``I`` of
``benchmarks/results/NAME.json``, followed by the command, date and machine that produced it. The figures live
in the JSON files only; this script copies them. ``--check`` changes nothing and exits 1 when a page differs
from its files (a test runs it).

    python benchmarks/render.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from _common import RESULTS, render_table

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"<!-- results: (\S+) (\d+) -->\n.*?<!-- /results -->", re.S)


def block(name: str, index: int, results: Path = RESULTS) -> str:
    path = results / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"{path}: no such results file (run the benchmark, or fix the marker)")
    record = json.loads(path.read_text(encoding="utf-8"))
    tables = record["tables"]
    if index >= len(tables):
        raise SystemExit(f"{path} holds {len(tables)} tables; a page asks for table {index}")
    table = tables[index]
    when = record.get("date") or "an earlier run"
    source = f"`{record['command']}`, {when}; {record['machine']}"
    if record.get("source"):
        source += f" ({record['source']})"
    lines = [f"<!-- results: {name} {index} -->"]
    if table.get("title"):
        lines += [f"**{table['title']}**", ""]
    lines += [render_table(table["header"], table["rows"]), "", f"<sub>{source}</sub>", "<!-- /results -->"]
    return "\n".join(lines)


def render(text: str, results: Path = RESULTS) -> str:
    return BLOCK.sub(lambda m: block(m.group(1), int(m.group(2)), results), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is out of date")
    args = ap.parse_args(argv)
    stale = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(page)
            if not args.check:
                page.write_text(new, encoding="utf-8")
    for page in stale:
        print(f"{page}: {'out of date' if args.check else 'updated'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
