"""The drift sidecar: an ASGI service beside each predictor that takes the CloudEvents the KServe request
logger sends (or the local stack's transformer, which sends the same), keeps the numbers its detector
needs in a durable observation log, and tests windows of them against the bundle's drift reference with
alibi-detect. It runs in its own environment (``requirements/drift.txt``: alibi-detect 0.11.4, numpy
1.24): it reads bundles through the contract package alone and imports nothing else of the project but
this package."""
