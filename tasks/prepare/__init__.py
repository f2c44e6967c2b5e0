"""prepare_dataset: source images -> resized RGB files in <split>/<class>/ folders.

- `plan.py`    classes, duplicates, per-class caps and the deterministic split (pure)
- `stamp.py`   dataset.json: what the last finished run rendered, so a re-run reuses it
- `folders.py` folder upkeep: every class folder in every split, stale outputs removed
- `render.py`  decode, fix orientation, convert to RGB and resize, across a process pool
- `tasks.py`   the Prefect tasks: inspect files (cached by content) and render batches
- `columns.py` the per-image state as compact columns: what the tasks return, the manifest
"""
