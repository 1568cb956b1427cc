"""The batch-scoring step of the batch pipelines: runs ``python -m inference.batch`` (the serving side's
scorer, never imported here) in the project image, locally or as a KubeRay RayJob."""
