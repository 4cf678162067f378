"""Gwanje domain: sample model, typed config, normalization, pipeline. No client libraries."""
