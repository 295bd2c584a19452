"""ONNX export and onnxruntime execution (registers no method).

    export   a model to ONNX bytes (`export_onnx`), with the rewrites the zoo needs
    runtime  `OrtPredictor` sessions, argmax agreement, interleaved latency, op counts
"""
