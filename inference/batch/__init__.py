"""Batch scoring on Ray Data: a table of patients or a folder of X-rays scored with a serving bundle.

The scoring reuses the serving runtimes' own code: the transformer's codecs check and encode every
record or image file exactly as an online request is checked (:mod:`inference.transformer`), the model
runs as the predictors run it, and the answer is decoded by the same codec with the bundle's
calibration, so a row scored here gets the probability and label the V2 endpoint gives it.

- :mod:`.records`: CSV text rows → the codec's per-feature V2 inputs, image files → its ``image`` input
- :mod:`.scorer`: one Ray Data actor class per workload; the bundle is opened once per actor
- :mod:`.inputs`: where the rows come from (a CSV path or ``s3://`` object, a folder of images)
- :mod:`.run`: the Ray Data pipeline (``map_batches`` over an actor pool), results streamed to Parquet
- :mod:`.summary`: counts, refusals, the probability histogram; JSON and an HTML/Markdown report
- ``python -m inference.batch``: the command
"""
