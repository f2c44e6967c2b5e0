"""curate_images: flag scraped images that should not teach the model, without moving any.

- `on_topic.py`      an ImageNet classifier (any predict engine) says what each image shows;
                     an image whose top-k holds none of its label's expected classes is
                     `off_topic`
- `features.py`      pooled features of a frozen ImageNet backbone, cached by content hash
- `label_issues.py`  out-of-fold probabilities of a cheap model on those features, then
                     confident learning (cleanlab) -> `suspect_label` with the label it believes
- `inputs.py`        the <class>/<image> folder listed and the classifier checked, without
                     TensorFlow (the command line checks before loading it); content hashes
- `tasks.py`         the Prefect tasks: run each check, return `curation` rows
"""
