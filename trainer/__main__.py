"""``python -m trainer fit|validate|test|predict --config configs/<name>.yaml``."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from data.datamodule import DenseCaptionDataModule
from trainer.module import DenseCaptioner
from trainer.predictions import DenseCaptionWriter


class FrameSelectCLI(LightningCLI):
    """Links arguments shared by the model and the data, and sets checkpoint defaults."""

    def add_arguments_to_parser(self, parser) -> None:
        # The data module drops videos with fewer decoded frames than the frame budget.
        parser.link_arguments("model.num_frames", "data.min_frames")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # One last.ckpt that each run overwrites: "resume from checkpoints/last.ckpt" stays true.
        parser.set_defaults(
            {"checkpoint.dirpath": "checkpoints", "checkpoint.save_last": True, "checkpoint.enable_version_counter": False}
        )
        parser.add_lightning_class_args(DenseCaptionWriter, "predictions")


def main(args: list[str] | None = None, run: bool = True) -> FrameSelectCLI:
    """Entry point; ``args``/``run`` let tests drive the CLI in-process."""
    return FrameSelectCLI(
        DenseCaptioner,
        DenseCaptionDataModule,
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()
