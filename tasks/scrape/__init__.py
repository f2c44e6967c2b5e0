"""scrape_images: fetch pages, find every image on them, download politely, keep valid images.

- `extract.py`     image URLs and next-page links in a page's HTML (pure), fed in chunks to
- `collect.py`     the parser target that sees each element as libxml2 reads it (no tree)
- `css.py`, `srcset.py`, `jsonld.py`  linear scanners of CSS, srcset and JSON-LD
- `budget.py`      the work meter of those parsers: counts their steps, stops at a deadline
- `fetch.py`       the HTTP client: redirects hop by hop, retries, deadlines, robots.txt
- `settings.py`    the stage's settings, declared once (the flow's parameters extend them)
- `session.py`     the one pooled requests session (proxies only on request), retry waits
- `deadline.py`    a total deadline per request: a watchdog shuts sockets that trickle
- `netguard.py`    which addresses may be contacted (the SSRF guard), proxies included
- `hosts.py`       the canonical host key every per-host rule uses; URLs with user info
- `robots.py`      robots.txt (RFC 9309, protego), a bounded rule matcher, Crawl-delay,
                   X-Robots-Tag opt-outs (`protego_compat.py`: the protego internals it reads)
- `politeness.py`  per-host limits across threads, processes and Dask workers
- `urllib3_compat.py`, `prefect_compat.py`  what urllib3 and Prefect offer no public way to do
- `images.py`      bytes -> validated image stored as raw/<label>/<sha256>.<ext>
- `manifest.py`    scrape_manifest rows, duplicates decided in page order
- `tasks.py`       the Prefect tasks: read pages, download shards, dedupe, clear parts
"""
