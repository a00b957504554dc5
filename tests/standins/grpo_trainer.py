#!/usr/bin/env python3
"""A stand-in for the trainer a launch script starts (FLEMING_PYTHON): it gets the trainer's
arguments (`-m fleming_dsl.cli job grpo --config C`, after torchrun's when a launcher starts
it: only `--config` is read), builds the vLLM part of GRPOConfig the
real job would (`grpo_trainer.vllm_args` on the job config, as on a GPU with vllm installed), asks the
server it names for a generation, writes both to $STANDIN_LOG, and exits with $STANDIN_TRAINER_RC."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

from fleming_dsl.plan.jobconfig import GrpoJob
from fleming_dsl.runtime.train.grpo_trainer import vllm_args


def main() -> int:
    argv = sys.argv[1:]
    cfg = GrpoJob.model_validate_json(open(argv[argv.index("--config") + 1], encoding="utf-8").read())
    args = vllm_args(cfg, cuda=True, vllm_installed=True)
    request = urllib.request.Request(f"{args['vllm_server_base_url']}/generate/", method="POST",
                                     data=json.dumps({"prompts": ["q"]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        generated = json.load(response)
    with open(os.environ["STANDIN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"role": "trainer", "pid": os.getpid(), "grpo_config": args,
                              "generated": generated,
                              "node": os.environ.get("SLURMD_NODENAME")}) + "\n")
    return int(os.environ.get("STANDIN_TRAINER_RC", "0"))


if __name__ == "__main__":
    raise SystemExit(main())
