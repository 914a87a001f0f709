"""MLflow: run layout, parameters, tags, epoch metrics and plots."""
