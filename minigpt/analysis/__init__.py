"""Looking at trained models and runs: evaluation (evaluate.py), diagnostics (diagnose.py) and
sweep reports (report.py)."""
