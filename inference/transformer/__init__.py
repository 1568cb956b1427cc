"""The clinops transformer: validates V2 client requests against the bundle's typed schema, calls the
predictor over V2 REST or gRPC, and turns its outputs into probabilities, labels and risk levels.

One *codec* per schema kind (tabular: :mod:`.heart_disease`, image: :mod:`.pneumonia`), picked by the
workload catalog's kind, with ``parse``/``tensor`` (request -> model tensor) and ``decode`` (outputs ->
response tensors).
"""
