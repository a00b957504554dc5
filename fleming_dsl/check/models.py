"""Models as teachers, judges and evaluation targets: what each use needs from a model."""

from __future__ import annotations

import os
from collections.abc import Iterator

from fleming_dsl import ir
from fleming_dsl.check.common import Checked, call_kw, entries, option
from fleming_dsl.errors import Diagnostic
from fleming_dsl.spec import ast


def teachers_have_backends(c: Checked) -> Iterator[Diagnostic]:
    for decl in c.program.decls:
        if not isinstance(decl, (ast.SynthesizeDecl, ast.DistillDecl)):
            continue
        model = c.by_name.get(decl.teacher.name)
        if isinstance(model, ast.ModelDecl) and not model.has_backend():
            yield Diagnostic(f"the teacher '{decl.teacher.name}' has no generation backend",
                             decl.teacher.span,
                             hint=f"give model {decl.teacher.name} a block such as "
                                  "{ backend = vllm(tp = 8) } or { backend = transformers() }")


def data_gpus_cover_teacher(c: Checked) -> Iterator[Diagnostic]:
    """A written resources block on a vLLM-teacher step replaces the planner's GPUs, so it must
    give the tensor-parallel GPUs the teacher is served on (the backend's resolved
    `tensor_parallel`, 1 when unwritten)."""
    assert c.experiment is not None
    for step in (*c.experiment.synthesize, *c.experiment.distill):
        teacher = c.declarations.get(step.teacher)
        backend = teacher.backend if isinstance(teacher, ir.Model) else None
        if step.resources is None or backend is None or backend.kind != "vllm":
            continue
        tp = backend.tensor_parallel
        if step.resources.gpus < tp:
            decl = c.decl_at(step.span)
            found = [e.block for e in entries(decl.block if decl else None, "resources") if e.call is None]
            yield Diagnostic(f"{step.kind} {step.name} asks for {step.resources.gpus} GPUs, but its teacher "
                             f"'{step.teacher}' is served by vllm on {tp}",
                             found[0].span if found else step.span,
                             hint=f"write gpus = {tp} in its resources block")


data_gpus_cover_teacher.after_lowering = True  # type: ignore[attr-defined]


def evaluated_models_are_not_oracles(c: Checked) -> Iterator[Diagnostic]:
    """A template() teacher answers from each item's own label: evaluating it measures nothing.
    (Other teachers are evaluated through their own backend: openai, vllm, transformers.)"""
    for decl in c.program.decls:
        if not isinstance(decl, ast.EvaluateDecl):
            continue
        for target in decl.targets:
            model = c.by_name.get(target.name)
            if isinstance(model, ast.ModelDecl) and model.source.func.name == "template":
                yield Diagnostic(
                    f"cannot evaluate '{target.name}': a template() teacher reads each item's answer, "
                    "so its accuracy would measure nothing", target.span,
                    hint="evaluate stages, or models declared with hf(), local(), tiny() or openai()")


def api_keys_are_set(c: Checked) -> Iterator[Diagnostic]:
    """Warn when an openai() model's key variable is unset here (it may be set on the cluster)."""
    for decl in c.program.decls:
        if not isinstance(decl, ast.ModelDecl):
            continue
        backend = option(decl.block, "backend")
        calls = [decl.source, backend if isinstance(backend, ast.Call) else None]
        openai = next((call for call in calls if call is not None and call.func.name == "openai"), None)
        env = call_kw(openai, "api_key_env")
        if isinstance(env, ast.Str) and env.value and not os.environ.get(env.value):
            yield Diagnostic(f"environment variable {env.value} (the API key of model "
                             f"'{decl.name.name}') is not set here", env.span, severity="warning",
                             hint=f"export {env.value}=... where the workflow runs; keys are read "
                                  "from the environment only, never from the spec")
