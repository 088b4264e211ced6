"""``python -m train fit|evaluate|export|framing`` — see README.md, "Training the model"."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fit_p = sub.add_parser("fit", help="train (or --resume) a run")
    fit_p.add_argument("--run", type=Path, default=Path("runs/main"), help="run folder (checkpoints, logs)")
    fit_p.add_argument("--config", type=Path, help="a config.json to start from")
    fit_p.add_argument("--data", help="npz, Kaggle csv, or image-folder root")
    fit_p.add_argument("--epochs", type=int)
    fit_p.add_argument("--labels", choices=("fer2013", "ferplus"))
    fit_p.add_argument("--limit", type=int, help="use only the first N training rows")
    fit_p.add_argument("--resume", action="store_true", help="continue the run in --run")
    args = parser.parse_args(argv)

    from rich.console import Console
    console = Console()
    from train.config import TrainConfig
    from train.data import DataError

    try:
        if args.command == "fit":
            from train.fit import fit
            config = TrainConfig.load(args.config) if args.config else TrainConfig()
            changes = {k: getattr(args, k) for k in ("data", "epochs", "labels", "limit")
                       if getattr(args, k) is not None}
            state = fit(config.replace(**changes), args.run, resume=args.resume, console=console)
            console.print(f"done: epoch {state['epoch']}, best PublicTest {state['best_accuracy']:.4f} "
                          f"at epoch {state['best_epoch']}")
    except (DataError, FileExistsError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; the last finished epoch is saved — continue with --resume")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
