"""train_classifier: a prepared dataset -> a Keras model with checkpoints and histories.

- `spec.py`     the TrainSpec, the dataset folder checked and described, the backbone's
                ImageNet weights found (no TensorFlow: the checks before a run use it)
- `inputs.py`   the tf.data input pipeline (decode, cache, shuffle, batch, augment, prefetch)
- `augment.py`  ImageDataGenerator's knobs as Keras preprocessing layers, and a preview grid
- `models.py`   the four model factories
- `history.py`  batch_history and epoch_history rows, kept across resumes
- `fit.py`      the resumable fit (head, then fine-tuning), evaluation, the Prefect tasks
"""
