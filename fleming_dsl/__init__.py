"""fleming-dsl: a declarative language for medical reasoning post-training, compiled to Snakemake."""

__version__ = "0.1.0"
