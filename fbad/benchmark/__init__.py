"""`fbad benchmark`: every method on every suite of real and synthetic frames, side by side in one run.

`suites` (real abnormal frames, lesions in real normal heads, the phantom) and `methods` (fbad trainings,
the image-statistics baseline) are config (`conf/benchmark.yaml`); `runner.run_benchmark` trains each method
on the suite's normal training frames, calibrates its threshold on normal validation frames only and scores
the suite's test frames; `metrics` and `report` turn the scores into the table, plots and MLflow runs.
"""
