#!/usr/bin/env bash
# Install fleming-dsl and everything it runs, on a fresh machine (Python 3.11, pip, gcc).
# The CPU build of torch goes first: a bare `torch` requirement would pull a multi-GB CUDA build.
# On a GPU machine, install the CUDA torch you want first (and `pip install -e ".[vllm]"`).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install --quiet torch==2.13.0
fi
# constraints.txt pins every library to the versions the goldens and figures were made with.
python -m pip install --quiet -c constraints.txt -e ".[test,track]"  # track: the offline tracking integrations, tested too
fleming --version
