"""Watching a served model after the fact: the drift sidecar's observation log for a period, compared
with the champion bundle's drift reference in an Evidently report, and a retraining trigger (library
code + KFP components)."""
