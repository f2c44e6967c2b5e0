"""promote_model: tonight's model (the challenger) against its dataset's champion.

- `evaluate.py`  the frozen evaluation set (test/, else val/) and both models' scores on it,
                 through the predict engines (no second Keras loading or decoding path)
- `decide.py`    the promotion rule: first, promoted, kept, incompatible, forced (pure)
- `candidate.py` a run's trained model and card, checked (no TensorFlow: the CLI checks early)
- `record.py`    `models` rows, the champion pointer, the Markdown artifact and the event
"""
