"""What every flow passes through before it works.

- `entry.py`    `@gated_flow(name=...)`: Prefect's `flow` with the gate in front of the body
- `policy.py`   the served-run policy: allowed roots and Dask schedulers, paths found by type
- `claims.py`   a run id is exclusive per stage while a run uses it (claim files, heartbeat)
- `runners.py`  a stage's `runner` choice -> a Prefect task runner
"""
