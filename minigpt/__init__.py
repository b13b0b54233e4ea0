"""minigpt: a character-level GPT written by hand in PyTorch.

The package is layered; each layer imports only the ones below it (checked by import-linter,
see pyproject.toml):

    commands/     the tools' entry points (python -m minigpt <tool>): compose, build, call
    analysis/     evaluation, diagnostics, sweep reports
    inference/    generation, quantization, export        training/  LightningModules, callbacks, the run
    checkpoint/   the checkpoint format, loading, GPT-2 folders, init_from
    data/         corpora, tokenized windows, LightningDataModules
    core          model.py, lstm.py, architectures.py, tokenizer.py, sampling.py, probes.py,
                  figures.py, io.py, errors.py, cli.py
"""
