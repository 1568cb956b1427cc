"""scikit-learn predictor: serves a bundle's ``model.joblib`` (``predict_proba``) with dynamic batching."""
