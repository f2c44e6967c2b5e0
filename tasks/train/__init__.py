"""train_classifier: a prepared dataset -> a Keras model with checkpoints and histories.

- `augment.py`  ImageDataGenerator's knobs as Keras preprocessing layers, and a preview grid
- `models.py`   the four model factories and their ImageNet weights
- `fit.py`      tf.data input pipeline, history callbacks, resumable fit, the model card
"""
