"""Many requests through one teacher: batches large enough to keep vLLM busy, with progress."""

from __future__ import annotations

from fleming_dsl.runtime.teachers.protocol import Request, Response, Teacher


def complete_batched(teacher: Teacher, requests: list[Request], desc: str,
                     batch_size: int = 512) -> list[Response]:
    """`teacher.complete` in batches with a progress bar (large batches keep vLLM busy)."""
    from tqdm import tqdm

    responses: list[Response] = []
    with tqdm(total=len(requests), desc=desc, unit="req", disable=len(requests) < batch_size) as bar:
        for start in range(0, len(requests), batch_size):
            chunk = requests[start:start + batch_size]
            responses += teacher.complete(chunk)
            bar.update(len(chunk))
    return responses
