"""The run directory, one owner: its layout and config (`directory`), checkpoints (`checkpoints`), lock (`lock`), HParams record (`hparams`)."""
