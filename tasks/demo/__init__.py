"""`pixelpipe demo`'s material: generated mountain/forest pictures and a gallery website
served on 127.0.0.1 (`gallery.py`)."""
