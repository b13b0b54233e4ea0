"""Using a trained model: generation (generation.py), int8 quantization (quantize.py) and export
(export.py)."""
