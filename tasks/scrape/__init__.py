"""scrape_images: fetch pages, find every image on them, download politely, keep valid images.

- `extract.py`     image URLs and next-page links in a page's HTML (pure)
- `fetch.py`       one pooled, guarded HTTP session: retries, deadlines, robots.txt
- `netguard.py`    which addresses may be contacted (the SSRF guard)
- `politeness.py`  per-host limits across threads, processes and Dask workers
- `images.py`      bytes -> validated image stored as raw/<label>/<sha256>.<ext>
- `manifest.py`    scrape_manifest rows, duplicates decided in page order
- `tasks.py`       the Prefect tasks: read pages, download shards, dedupe, clear parts
"""
