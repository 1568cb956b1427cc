"""clinops: KFP components and the library code they run."""
