"""Where pixelpipe keeps things: the data-root layout and the Parquet warehouse."""
