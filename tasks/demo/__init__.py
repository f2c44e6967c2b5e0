"""`pixelpipe demo`'s material: generated mountain/forest pictures and a gallery website
served on 127.0.0.1 (`gallery.py`), and the line that says why its optional ResNet50 ImageNet
stage is skipped (`imagenet.py`)."""
