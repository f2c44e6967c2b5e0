"""Benchmark: one page that spells one loopback host many ways (issue 23, "one identity per
host"), scraped by this tree and by a baseline tree in the same run; counts, not times.

Two pages of 16 images each, all on one host, scraped at --per-host 1 and concurrency 16:
- `userinfo`: http://u1@127.0.0.1:P/..., http://u2@127.0.0.1:P/... (the measured attack);
- `numeric`:  127.0.0.1, 127.1, 2130706433, 0x7f000001, ... and a port written 0P.
For each tree: the most requests in flight at the server, robots.txt fetches, image requests
sent, the Prefect host limits the scrape created (a temporary Prefect server), the statuses.

    .venv/bin/python bench/bench_host_identity.py [--baseline /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, tempfile
from collections import Counter
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness
try:  # the scrape settings model; a baseline checkout from before issue 24 has FetchConfig
    from tasks.scrape.settings import ScrapeSettings as FetchConfig
except ImportError:
    from tasks.scrape.fetch import FetchConfig
from tasks.scrape.politeness import create_host_limits
from tasks.scrape.tasks import download_images, find_image_urls
from tests.http_server import SiteServer, picture

def limits():
    with get_client(sync_client=True) as client:
        return {l.name for l in client.read_global_concurrency_limits(limit=200)}

links_of = json.loads(sys.argv[1])
cfg = FetchConfig(concurrency=16, per_host=1, allow_private_networks=True, timeout=5.0)
out = {}
with prefect_test_harness(server_startup_timeout=180):
    for name, templates in links_of.items():
        with SiteServer(root=None, latency=0.05) as site:
            links = [t.replace("PORT", str(site.port)) for t in templates]
            site.files.update({f"img/{i}.jpg": picture(3000 + i) for i in range(len(links))})
            site.files["page.html"] = "".join(f'<img src="{u}">' for u in links).encode()
            site.files["robots.txt"] = b"User-agent: *\nAllow: /\n"
            found = find_image_urls.fn([site.url("page.html")], "r", "t", cfg)
            before = limits()
            create_host_limits([c["url"] for c in found["candidates"]], cfg.per_host)
            created = len(limits() - before)
            site.reset_stats()
            rows = download_images.fn(found["candidates"], "r", "t", tempfile.mkdtemp(), cfg)
            hits = [h.path for h in site.stats.hits]
            out[name] = {
                "in_flight": site.stats.max_in_flight,
                "robots": hits.count("/robots.txt"),
                "images_sent": sum(p.startswith("/img/") for p in hits),
                "limits": created,
                "statuses": dict(Counter(r["status"] for r in rows)),
                "stored_creds": sum("@" in (r["url"] or "") for r in rows),
            }
print("RESULT " + json.dumps(out))
"""


def pages() -> dict[str, list[str]]:
    numeric = ["127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0177.0.0.1"]
    bases = [
        f"{s}://{h}:{p}"
        for h, p, s in itertools.product(numeric, ["PORT", "0PORT"], ["http", "HTTP"])
    ][:16]
    return {
        "userinfo": [f"http://u{i}@127.0.0.1:PORT/img/{i}.jpg" for i in range(16)],
        "numeric": [f"{b}/img/{i}.jpg" for i, b in enumerate(bases)],
    }


def run(tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "DO_NOT_TRACK": "1"}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="ERROR")
    env["PREFECT_HOME"] = tempfile.mkdtemp(prefix="bench-host-identity-")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(pages())],
        cwd=tree, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{tree}: no result\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    trees = {"this tree": ROOT} | ({"baseline": args.baseline} if args.baseline else {})
    results = {label: run(tree) for label, tree in trees.items()}
    columns = ["in_flight", "robots", "images_sent", "limits", "stored_creds", "statuses"]
    print(f"{'page':<9} {'tree':<10} " + " ".join(f"{c:>12}" for c in columns[:-1]) + "  statuses")
    for page in pages():
        for label, result in results.items():
            row = result[page]
            cells = " ".join(f"{row[c]:>12}" for c in columns[:-1])
            print(f"{page:<9} {label:<10} {cells}  {row['statuses']}")
    print("(per_host=1, concurrency=16, 16 images on one host; counts at the loopback server)")


if __name__ == "__main__":
    main()
