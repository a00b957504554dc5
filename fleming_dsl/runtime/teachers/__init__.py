"""Teachers: models (or a deterministic stand-in) that write questions, rationales, votes and grades.

`make_teacher(generator, cache_dir, seed)` returns a `CachedTeacher`: the chosen backend behind an
on-disk cache, so a re-run or resumed job makes no call twice. Backends: `template` (no model),
`transformers`, `vllm`, `openai` (any OpenAI-compatible endpoint).
"""

from fleming_dsl.runtime.teachers.protocol import (
    Backend,
    CachedTeacher,
    Request,
    Response,
    Teacher,
    TeacherError,
    make_teacher,
)

__all__ = ["Backend", "CachedTeacher", "Request", "Response", "Teacher", "TeacherError",
           "make_teacher"]
