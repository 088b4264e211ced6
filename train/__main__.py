"""``python -m train fit|evaluate|export|compare|robustness|average|framing`` — see README.md, "Training the model"."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from train.config import JPEG_QUALITIES, LOWRES_SIZES, TrainConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


MEETINGS_HELP = "the labelled real captures whose faces' sizes PublicTest is also scored at"
TEMPERATURE_HELP = "softmax temperature folded into the exported model (default: fitted on PublicTest; 1: none)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fit_p = sub.add_parser("fit", help="train (or --resume) a run")
    fit_p.add_argument("--run", type=Path, default=Path("runs/main"), help="run folder (checkpoints, logs)")
    fit_p.add_argument("--config", type=Path, help="a config.json to start from")
    fit_p.add_argument("--data", help="npz, Kaggle csv, or image-folder root")
    fit_p.add_argument("--epochs", type=int)
    fit_p.add_argument("--labels", choices=("fer2013", "ferplus"))
    fit_p.add_argument("--seed", type=int, help="seeds weights, order, augmentation and dropout")
    fit_p.add_argument("--limit", type=int, help="use only the first N training rows")
    fit_p.add_argument("--webcam", type=float, help="share of faces given a webcam's blur, exposure and noise")
    fit_p.add_argument("--jpeg", type=float, help=f"share of faces JPEG-compressed at quality {JPEG_QUALITIES[0]}-{JPEG_QUALITIES[1]}, "
                       "on a block grid at a random offset (a video codec's blocks)")
    fit_p.add_argument("--lowres", type=float, help=f"share of faces shrunk to {LOWRES_SIZES[0]}-{LOWRES_SIZES[-1]} px and enlarged back, "
                       "as a small face in a big gallery reaches the network")
    fit_p.add_argument("--label-smoothing", type=float, help="share of each target spread over all classes (default 0.1)")
    fit_p.add_argument("--mixup", type=float, help="mixup's Beta(a, a) parameter, e.g. 0.2 (0: off)")
    fit_p.add_argument("--init", help="start from this trained model's weights (a warm restart); "
                       "with wider --widths/--dense, its channels are copied into the wider network")
    fit_p.add_argument("--widths", type=_widths, help="channels of the four conv blocks, e.g. 32,64,192,384")
    fit_p.add_argument("--dense", type=int, help="units of the dense layer before the output")
    fit_p.add_argument("--teacher", action="append", help="a trained model whose answers join the targets "
                       "(distillation); repeat for several")
    fit_p.add_argument("--teacher-weight", type=float, help="the teachers' share of each target (default 0.5)")
    fit_p.add_argument("--lr", type=float, dest="learning_rate", help="peak learning rate")
    fit_p.add_argument("--warmup", type=int, dest="warmup_epochs", help="warm-up epochs")
    fit_p.add_argument("--resume", action="store_true", help="continue the run in --run")
    eval_p = sub.add_parser("evaluate", help="metrics.json, plots and report for a model")
    eval_p.add_argument("--run", type=Path, default=Path("runs/main"))
    eval_p.add_argument("--model", type=Path, help="default: <run>/best.keras")
    eval_p.add_argument("--data", default="../shared/data/fer2013.npz")
    eval_p.add_argument("--out", type=Path, default=Path("models"))
    export_p = sub.add_parser("export", help="write the runtime model files and model card")
    export_p.add_argument("--run", type=Path, default=Path("runs/main"))
    export_p.add_argument("--model", type=Path, help="default: <run>/best.keras")
    export_p.add_argument("--out", type=Path, default=Path("models"))
    export_p.add_argument("--temperature", type=float, help=TEMPERATURE_HELP)
    export_p.add_argument("--data", default="../shared/data/fer2013.npz",
                          help="FER2013, to score the runtime model on PublicTest and PrivateTest")
    export_p.add_argument("--meetings", type=Path, default=Path("../shared/data/meetings"), help=MEETINGS_HELP)
    compare_p = sub.add_parser("compare", help="PublicTest as the runtime runs it: a candidate against the shipped model")
    compare_p.add_argument("--run", type=Path, default=Path("runs/main"))
    compare_p.add_argument("--model", type=Path, help="default: <run>/best.keras")
    compare_p.add_argument("--against", type=Path, default=Path("models"), help="the shipped model's folder")
    compare_p.add_argument("--temperature", type=float, help=TEMPERATURE_HELP)
    compare_p.add_argument("--data", default="../shared/data/fer2013.npz")
    compare_p.add_argument("--meetings", type=Path, default=Path("../shared/data/meetings"), help=MEETINGS_HELP)
    robust_p = sub.add_parser("robustness", help="PublicTest at the face sizes and JPEG qualities of meetings "
                              "-> <out>/metrics.json and robustness.png")
    robust_p.add_argument("--out", type=Path, default=Path("models"), help="the model's folder")
    robust_p.add_argument("--data", default="../shared/data/fer2013.npz")
    robust_p.add_argument("--meetings", type=Path, default=Path("../shared/data/meetings"), help=MEETINGS_HELP)
    average_p = sub.add_parser("average", help="average a run's last epochs' weights (SWA) into <run>/averaged.keras")
    average_p.add_argument("--run", type=Path, default=Path("runs/main"))
    average_p.add_argument("--first", type=int, required=True, help="first epoch in the average")
    average_p.add_argument("--last", type=int, help="last epoch in the average (default: the run's last)")
    framing_p = sub.add_parser("framing", help="measure FER2013 eye positions for preprocess.py")
    framing_p.add_argument("--data", default="../shared/data/fer2013.npz")
    demo_p = sub.add_parser("demo-faces", help="pick the PrivateTest faces bundled for 'fer-overlay demo'")
    demo_p.add_argument("--data", default="../shared/data/fer2013.npz")
    demo_p.add_argument("--out", type=Path, default=Path("models/demo_faces.npz"))
    args = parser.parse_args(argv)

    from rich.console import Console
    console = Console()
    from train.data import DataError

    try:
        if args.command == "fit":
            from train.fit import fit
            config = TrainConfig.load(args.config) if args.config else TrainConfig()
            changes = {k: getattr(args, k) for k in ("data", "epochs", "labels", "seed", "limit", "webcam", "jpeg", "lowres", "mixup", "init",
                                                  "learning_rate", "warmup_epochs", "teacher_weight", "label_smoothing",
                                                  "widths", "dense")
                       if getattr(args, k) is not None}
            if args.teacher:
                changes["teacher"] = tuple(args.teacher)
            state = fit(config.replace(**changes), args.run, resume=args.resume, console=console)
            console.print(f"done: epoch {state['epoch']}, best PublicTest {state['best_accuracy']:.4f} "
                          f"at epoch {state['best_epoch']}")
        elif args.command == "evaluate":
            from train.evaluate import evaluate
            metrics = evaluate(args.model or args.run / "best.keras", args.data, args.out, args.run)
            console.print(f"PublicTest {metrics['PublicTest']['accuracy']:.4f} "
                          f"(flip {metrics['PublicTest_flip']['accuracy']:.4f}), PrivateTest "
                          f"{metrics['PrivateTest']['accuracy']:.4f} (flip {metrics['PrivateTest_flip']['accuracy']:.4f})"
                          f" -> {args.out / 'metrics.json'}")
        elif args.command == "export":
            from train.export import export, runtime_scores, update_metrics, write_card, write_runtime_report
            from train.robustness import measure_into
            model = args.model or args.run / "best.keras"
            runtime = export(model, args.out, args.run, temperature=temperature(args, model))
            scores = runtime_scores(args.out, args.data)
            update_metrics(args.out, {"runtime": runtime, **scores})
            measure_into(args.out, args.data, args.meetings, console)
            write_runtime_report(args.out, scores["PrivateTest_runtime"])
            write_card(args.out)
            console.print(f"exported to {args.out}: {runtime}; runtime PublicTest "
                          f"{scores['PublicTest_runtime']['accuracy']:.4f}, PrivateTest {scores['PrivateTest_runtime']['accuracy']:.4f}")
        elif args.command == "compare":
            from train.export import compare
            model = args.model or args.run / "best.keras"
            t = temperature(args, model)
            scores = compare(model, args.against, args.data, t, args.meetings, console)
            console.print(f"PublicTest as the runtime runs it (int8, second look; candidate at temperature {t:.3f}); "
                          "PrivateTest not read")
            for name, score in scores.items():
                console.print(f"{name:9}  accuracy {score['accuracy']:.4f}  macro-F1 {score['macro_f1']:.3f}  "
                              f"{score['runs_per_face']:.2f} model runs a face;  {summary(score['robustness'])}")
            gain = scores["candidate"]["accuracy"] - scores["shipped"]["accuracy"]
            console.print(f"candidate - shipped: {gain * 100:+.2f} points (one standard error: about 0.76)")
        elif args.command == "robustness":
            from train.robustness import measure_into
            console.print(summary(measure_into(args.out, args.data, args.meetings, console)))
        elif args.command == "average":
            from train.average import average_run
            path, accuracy = average_run(args.run, args.first, args.last)
            console.print(f"epochs {args.first}..{args.last or 'last'} averaged: PublicTest {accuracy:.4f} -> {path}")
        elif args.command == "framing":
            from train.data import load
            from train.framing import measure
            console.print(measure(load(args.data).subset("PublicTest")))
        elif args.command == "demo-faces":
            import numpy as np
            from train.data import load
            from train.framing import demo_faces
            pixels, labels = demo_faces(load(args.data).subset("PrivateTest"))
            np.savez_compressed(args.out, pixels=pixels, labels=labels)
            console.print(f"{len(labels)} faces -> {args.out}")
    except (DataError, FileExistsError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; the last finished epoch is saved — continue with --resume")
        return 130
    return 0


def _widths(text: str) -> tuple[int, ...]:
    """``--widths 32,64,192,384`` as a tuple of positive ints."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 4 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give four positive channel counts, e.g. 32,64,192,384")
    return widths


def summary(robustness: dict) -> str:
    """One line: accuracy with faces 24 and 32 px across, JPEG-compressed at quality 50 (a video
    codec's blocks), and at the real captures' sizes."""
    from train.robustness import by_side
    lossless, jpeg50 = by_side(robustness), by_side(robustness, 50)
    line = (f"faces 24 px {lossless[24]:.4f}, 32 px {lossless[32]:.4f}, "
            f"JPEG quality 50 at 48 px {jpeg50[48]:.4f} and 32 px {jpeg50[32]:.4f}")
    if "meetings" in robustness:
        line += f", the {robustness['meetings']['faces']} real faces' sizes {robustness['meetings']['accuracy']:.4f}"
    return line


def temperature(args, model: Path) -> float:
    """``--temperature``, or the one that calibrates ``model`` on PublicTest."""
    if args.temperature is None:
        from train.export import fit_temperature
        return fit_temperature(model, args.data)
    if args.temperature <= 0:
        raise ValueError(f"--temperature must be above 0, not {args.temperature:g}")
    return args.temperature


if __name__ == "__main__":
    sys.exit(main())
