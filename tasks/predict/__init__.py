"""predict_batch: many images -> `predictions` rows, on one of three engines.

- `spec.py`     which model: an ImageNet backbone, a trained best.keras or a .tflite, resolved
                and checked before any work (ModelSpec)
- `engines/`    the engines side by side: keras, tflite, openvino (+ openvino_ir for int8);
                `engines/cache.py` loads a spec's engine once per process
- `inputs.py`   which images to read (files, folders, a scrape run, a split; no TensorFlow)
- `images.py`   their pixels, decoded in a tf.data pipeline
- `labels.py`   ImageNet class names, softmax, top-k ranking and target matching (pure)
- `tasks.py`    the Prefect task: one shard of images -> one Parquet part
"""
