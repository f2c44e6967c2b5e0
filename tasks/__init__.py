"""The work of each pipeline stage, one package per stage, pure functions plus thin Prefect
tasks over batches:

- `scrape/`   pages and URL lists -> downloaded, validated, deduplicated originals
- `curate/`   off-topic and mislabeled images flagged (an ImageNet classifier; label issues)
- `prepare/`  originals -> resized RGB images split into train/val/test folders
- `train/`    a prepared dataset -> a Keras model, its checkpoints and histories
- `registry/` champion vs challenger on the frozen test split: evaluate, decide, record
- `predict/`  images -> `predictions` rows, on the Keras, TFLite or OpenVINO engine
- `report/`   one run's tables -> report.html / report.md and Prefect artifacts
- `demo/`     generated pictures and a loopback gallery site for `pixelpipe demo`

Shared by all: `runtime.py` (logging and progress in and out of a Prefect run, the Keras dtype
policy, artifact keys), `weights.py` (ImageNet weights files in the Keras cache) and
`keras_compat.py` (the files keras.applications downloads: names, origins, md5s). Atomic
writes, image file names and the one gate that opens untrusted images are in `storage/`.
"""
