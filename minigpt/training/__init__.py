"""Training: the LightningModules (module.py, classifier.py), optimizers and schedules, callbacks,
and the run itself (run.py)."""
