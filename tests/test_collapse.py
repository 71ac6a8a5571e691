"""The collapse alarm: fires once, after `patience` logged steps below a tenth of 1/sqrt(d)."""

import math

import pytest

from byol_tf.training import collapse


def test_fires_once_after_patience_consecutive_low_steps():
    alarm = collapse.CollapseAlarm(projection_dim=256, fraction=0.1, patience=3)
    assert alarm.threshold == pytest.approx(0.1 / 16)
    healthy, collapsed = 0.045, 1e-4  # the small-data baseline's and no_predictor's logged values
    lines = [alarm.observe(step, std) for step, std in
             [(100, healthy), (200, collapsed), (300, collapsed), (400, healthy), (500, collapsed),
              (600, collapsed), (700, collapsed), (800, collapsed)]]
    assert lines[:6] == [None] * 6  # a healthy step in between resets the count
    assert lines[6].startswith("Collapse alarm at step 700: the embedding std has stayed below 0.0063 ")
    assert "for 3 logged steps; it is now 0.0001." in lines[6]
    assert lines[7] is None and alarm.fired_at == 700  # once


def test_healthy_runs_and_a_switched_off_alarm_stay_silent():
    alarm = collapse.CollapseAlarm(projection_dim=32)
    assert all(alarm.observe(step, 0.9 / math.sqrt(32)) is None for step in range(1000))
    off = collapse.CollapseAlarm(projection_dim=32, fraction=0.0)
    assert all(off.observe(step, 0.0) is None for step in range(10))
    with pytest.raises(ValueError):
        collapse.CollapseAlarm(projection_dim=0)


def test_the_training_loop_raises_the_alarm_and_can_stop_with_the_checkpoint_saved(tmp_path):
    from byol_tf.run import checkpoints
    from byol_tf.training import loop
    from helpers.configs import tiny_config

    # A threshold no real run stays above (fraction 100): the alarm must fire at the 2nd logged step.
    config = tiny_config(max_steps=8, log_every_steps=2, steps_per_loop=2, collapse_alarm=100.0,
                         collapse_patience=2)
    lines = []
    result = loop.run(config, str(tmp_path / "warn"), print_fn=lines.append)
    assert result.step == 8  # a warning only, by default
    alarms = [line for line in lines if line.startswith("Collapse alarm")]
    assert len(alarms) == 1 and alarms[0].startswith("Collapse alarm at step 4: ")

    config.training.stop_on_collapse = True
    with pytest.raises(collapse.CollapseError, match=r"Stopped at step 4, checkpoint saved") as error:
        loop.run(config, str(tmp_path / "stop"), print_fn=lambda line: None)
    assert "\n" not in str(error.value)
    assert checkpoints.checkpoint_step(checkpoints.checkpoint_path(str(tmp_path / "stop"))) == 4
    assert not (tmp_path / "stop" / ".lock").exists()
