"""Corpora and their tokenized windows, as LightningDataModules: plain text (corpus.py), labelled
texts for classification (labelled.py) and captioned 8x8 digit images for the VLM (digits.py)."""
