"""pixelpipe's deployments: `serve` (one process, no worker) and `prefect.yaml` (work pools).

- `serve.py`      every flow as a deployment, served by `pixelpipe serve` under the operator's
                  policy (flows/gate/policy.py); also `python -m deployments.serve`
- `prefect.yaml`  the same deployments for `prefect deploy` and a process worker (package data)
"""
