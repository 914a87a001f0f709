"""`fbad sweep`: an Optuna study over `fbad train` configs, tracked in MLflow, shared by any number of workers.

space.py (YAML space -> trial overrides), objective.py (one trial = one real training), pruning.py
(per-epoch reports from Lightning), storage.py (sqlite / PostgreSQL, heartbeat, retry), tracking.py
(MLflow parent per study, child per trial), runner.py (the whole sweep), __main__.py (the command).
"""


class SweepError(ValueError):
    """A sweep configuration that cannot run (bad space, objective on test data, conflicting study)."""
