"""The `fleming` command line (`main`), one handler per command in `main.py`."""

from fleming_dsl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
