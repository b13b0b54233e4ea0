"""Corpora and their tokenized windows, as LightningDataModules: plain text (corpus.py) and
labelled texts for classification (labelled.py)."""
