"""Prediction engines side by side: Keras (`keras.py`), TFLite (`tflite.py`) and OpenVINO
(`openvino.py` converts, compiles and runs; `openvino_ir.py` prepares the fp32 or int8 IR).

`cache.py`'s `get_predictor` loads a spec's engine once per process and hands every shard the
same one.
"""
