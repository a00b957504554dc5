"""The trainers' side of `runtime/preemption.py`: checkpoint at the end of the step the signal
arrived in, then stop; the job raises `Preempted` once `trainer.train` returns.

Under several ranks each rank may see the signal in a different step (SLURM signals them one by
one), so they agree at every step end: all stop at the first step any of them saw it, and all
take part in the same checkpoint.
"""

from __future__ import annotations

from fleming_dsl.runtime import preemption, ranks


def checkpoint_on_signal():
    """A TrainerCallback: on the signal, save (`should_save`) and stop (`should_training_stop`)."""
    from transformers import TrainerCallback

    class CheckpointOnSignal(TrainerCallback):
        def __init__(self) -> None:
            self.stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            seen = preemption.requested()
            if ranks.distributed():
                seen = any(ranks.all_gather(seen))
            if seen:
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return CheckpointOnSignal()


def stop_if_signalled(callback, output_dir: str) -> None:
    """After `trainer.train`: raise `Preempted` naming the checkpoint if the signal stopped it."""
    if callback.stopped_at is not None:
        raise preemption.Preempted(
            f"stopped by SIG{preemption.PREEMPT_SIGNAL} (time limit near, or preempted) after "
            f"step {callback.stopped_at}; saved {output_dir}/checkpoint-{callback.stopped_at}")
