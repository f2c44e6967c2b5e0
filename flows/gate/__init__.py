"""What every flow passes through before it works.

- `policy.py`   the served-run policy: allowed roots and Dask schedulers
- `runners.py`  a stage's `runner` choice -> a Prefect task runner
"""
