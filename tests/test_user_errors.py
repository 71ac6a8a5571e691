"""Mistakes and interruptions answered in one line, with nothing lost (the fault suite's short cases)."""

import os
import signal

from byol_tf.training import loop
from byol_tf.training import progress
from helpers.configs import tiny_config


def test_a_stop_before_the_first_step_does_not_claim_a_checkpoint(tmp_path, monkeypatch):
    start = progress.Progress.start

    def start_then_sigterm(self, step):  # the signal lands after the plan, before step 1
        start(self, step)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(progress.Progress, "start", start_then_sigterm)
    lines = []
    result = loop.run(tiny_config(max_steps=4), str(tmp_path), print_fn=lines.append)
    assert (result.step, result.exit_code, result.checkpoint) == (0, 143, None)
    assert lines[-1] == ("Stopped at step 0 (SIGTERM); no checkpoint yet (the stop came before the first step). "
                         "Run the same command to resume.")
    assert result.saved_state.startswith("no checkpoint yet")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").glob("ckpt-*.index"))
