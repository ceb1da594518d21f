"""The Ray jobs that compose the building blocks of `curation/` into distributed pipelines."""
