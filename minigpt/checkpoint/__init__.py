"""The checkpoint format (format.py), rebuilding models from checkpoints (load.py), Hugging Face
GPT-2 folders (gpt2.py), and starting a run from a trained model (init_from.py)."""
