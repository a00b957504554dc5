"""The experiment report: read what the jobs recorded, plot it, render markdown and HTML.

Stages, one module each, all pure except `plots` (writes PNGs) and the report job (writes the
directory): `collect` (files -> checked records) -> `summary` (headline figures, summary.json)
and `tables` (rows for markdown and HTML) -> `plots` (matplotlib, Agg) -> `render` (jinja2).
"""
