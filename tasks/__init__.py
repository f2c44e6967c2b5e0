"""The work of each pipeline stage: pure functions plus thin Prefect tasks over batches."""
