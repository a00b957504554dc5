"""A teacher served by vLLM offline batched generation (GPU machines; vllm imported lazily).

All requests of a job go to one batched call per distinct `n`, which is where vLLM is fast.
The request (engine arguments, sampling parameters, chats) is built by the pure
`generation.build_vllm_request`, so it is tested on CPU without vllm installed.
"""

from __future__ import annotations

from typing import Any

from fleming_dsl.runtime.teachers.backends.local import LocalModelBackend, request_seed
from fleming_dsl.runtime.teachers.protocol import Request


class VllmBackend(LocalModelBackend):
    engine = "vllm"

    def build_request(self, requests: list[Request], n: int) -> Any:
        from fleming_dsl.runtime.generation import build_vllm_request

        return build_vllm_request(self.model, [list(r.messages) for r in requests], n=n,
                                  temperature=self.settings.temperature,
                                  top_p=self.settings.top_p,
                                  max_new_tokens=self.settings.max_tokens, seed=self.seed,
                                  tensor_parallel=self.settings.tensor_parallel,
                                  seeds=[request_seed(self.seed, r) for r in requests])
