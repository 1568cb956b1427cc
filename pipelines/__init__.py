"""clinops pipelines: definitions, local runner, compiler, command line."""
