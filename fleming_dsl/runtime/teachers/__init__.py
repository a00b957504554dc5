"""Teachers: models (or a deterministic stand-in) that write questions, rationales, votes and grades.

`make_teacher(generator, cache_dir, seed)` returns a `CachedTeacher`: the chosen backend behind an
on-disk cache, so a re-run or resumed job makes no call twice. Backends (`backends/`): `template`
(no model), `transformers`, `vllm`, `openai` (any OpenAI-compatible endpoint).

    protocol.py  Request, Response, the Teacher and Backend protocols
    cache.py     DiskCache and CachedTeacher
    batching.py  complete_batched (progress bar, large batches)
    registry.py  make_backend / make_teacher
"""

from fleming_dsl.runtime.teachers.batching import complete_batched
from fleming_dsl.runtime.teachers.cache import CachedTeacher
from fleming_dsl.runtime.teachers.protocol import (
           Backend,
           Request,
           Response,
           Teacher,
           TeacherError,
)
from fleming_dsl.runtime.teachers.registry import make_backend, make_teacher

__all__ = ["Backend", "CachedTeacher", "Request", "Response", "Teacher", "TeacherError",
           "complete_batched", "make_backend", "make_teacher"]
