"""The work of each pipeline stage, one package per stage, pure functions plus thin Prefect
tasks over batches:

- `scrape/`   pages -> image URLs -> downloaded, validated, deduplicated originals
- `prepare/`  originals -> resized RGB images split into train/val/test folders
- `train/`    a prepared dataset -> a Keras model, its checkpoints and histories
- `predict/`  images -> `predictions` rows, on the Keras, TFLite or OpenVINO engine
- `report/`   one run's tables -> report.html / report.md and Prefect artifacts
- `demo/`     generated pictures and a loopback gallery site for `pixelpipe demo`

Shared by all: `runtime.py` (logging and progress in and out of a Prefect run) and
`weights.py` (ImageNet weights files). Atomic writes and image file names are in `storage/`.
"""
