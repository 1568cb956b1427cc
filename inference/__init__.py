"""clinops serving: KServe transformer, predictors and the local stack."""
