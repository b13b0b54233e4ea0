"""Looking at trained models and runs: evaluation (evaluate.py), diagnostics (diagnose.py), what
each head does (interpret.py, ablation.py, and the attention explorer page of explorer.py) and
sweep reports (report.py)."""
