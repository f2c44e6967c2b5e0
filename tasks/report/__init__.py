"""write_report: one run's tables -> report.html, report.md and Prefect artifacts.

- `stats.py`     pure summaries of the tables (counts, best epoch, confusion, hits)
- `plots.py`     matplotlib figures and thumbnails
- `sections.py`  the Scrape, Dataset, Training and Predictions sections
- `decision.py`  the Model decision section (the registry's verdict on this run's model)
- `filters.py`   the Filters section (learned and classic kernels)
- `document.py`  the small document model, rendered to HTML and Markdown
- `tasks.py`     the Prefect tasks: build the report, publish artifacts
"""
