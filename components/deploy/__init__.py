"""The deploy step: roll a new champion out to its InferenceService as a canary, judge the canary on its
Prometheus metrics, promote or roll back, and record the decision in MLflow; locally, restart the running
``clinops serve`` on the new bundle."""
