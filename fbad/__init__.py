"""fbad: config-driven experiments for detecting fetal brain anomalies in prenatal ultrasound."""

__version__ = "0.1.0"
