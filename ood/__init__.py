"""OOD scores and metrics, calibration metrics."""
