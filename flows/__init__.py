"""pixelpipe's Prefect flows: one module per deployable flow, plus parameters and the CLI."""
