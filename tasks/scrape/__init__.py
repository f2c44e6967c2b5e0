"""scrape_images: fetch pages, find every image on them, download politely, keep valid images.

- `extract.py`     image URLs and next-page links in a page's HTML (pure)
- `fetch.py`       the HTTP client: redirects hop by hop, retries, deadlines, robots.txt
- `settings.py`    the stage's settings, declared once (the flow's parameters extend them)
- `session.py`     the one pooled requests session (proxies only on request), retry waits
- `deadline.py`    a total deadline per request: a watchdog shuts sockets that trickle
- `netguard.py`    which addresses may be contacted (the SSRF guard), proxies included
- `robots.py`      robots.txt (RFC 9309, protego), Crawl-delay, X-Robots-Tag opt-outs
- `politeness.py`  per-host limits across threads, processes and Dask workers
- `images.py`      bytes -> validated image stored as raw/<label>/<sha256>.<ext>
- `manifest.py`    scrape_manifest rows, duplicates decided in page order
- `tasks.py`       the Prefect tasks: read pages, download shards, dedupe, clear parts
"""
