"""The clinops transformer: validates V2 client requests against the bundle's ``schema.json``, calls the
predictor over V2 REST or gRPC, and turns its outputs into probabilities, labels and risk levels.

One module per workload (:mod:`.heart_disease`, :mod:`.pneumonia`), each a *codec* with
``encode(request) -> model tensor`` and ``decode(outputs, request) -> response``.
"""
