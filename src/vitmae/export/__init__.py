"""A trained model for other runtimes: ONNX for onnxruntime (`onnx`, with its fused attention
in `onnx_attention`) and int8 dynamic quantisation (`int8`). Weights for timm, HuggingFace and
the official MAE code: `vitmae.weights.export`.
"""
