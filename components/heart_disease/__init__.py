"""Heart-disease risk from the UCI data: ingest, validate, split, train, evaluate (library code + KFP components)."""
