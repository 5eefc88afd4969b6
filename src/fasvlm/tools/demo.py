"""``fasvlm demo --model ...``: a small Gradio app to upload an image or a short video and see the decision.

::

    pip install 'fasvlm[demo]'
    fasvlm demo --model runs/quickstart            # then open http://127.0.0.1:7860

The page shows the decision (live/attack at the run's threshold), P(attack), the aligned face the model saw, and the
cue-map overlay (InstructFLIP) or the explanation (I-FAS). Scoring is :func:`fasvlm.tools.predict.predict_files`, the
same code as ``fasvlm predict``; a video is scored on ``--frames`` frames and summarised by their mean.

The app also answers on Gradio's HTTP API (endpoint ``/predict``, e.g. with ``gradio_client``); it listens on
127.0.0.1 unless ``--host`` says otherwise, and never opens a public share link.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main", "build_app", "score_file"]


def score_file(model, path: str, frames: int = 8) -> tuple[str, float | None, object, object, str]:
    """(decision text, P(attack), aligned face, cue overlay or None, details) for one uploaded file."""
    from fasvlm.tools.predict import overlay, predict_files

    rows, errors, items = predict_files(model, [Path(path)], frames=frames, progress=False)
    if not rows:
        return f"error: {errors[0]['error'] if errors else 'nothing scored'}", None, None, None, ""
    row = next((r for r in rows if r["frame"] is None and r.get("n_frames")), rows[0])  # a video's aggregate
    first = items[0]
    cue = overlay(first.crop, first.extra["cue_map"]) if "cue_map" in first.extra else None
    details = row.get("explanation") or first.extra.get("explanation") or ""
    if "cue_attack_share" in first.extra:
        details = f"cue map: {first.extra['cue_attack_share']:.2f} of the face marked as attack"
    if row.get("n_frames"):
        details = f"video: mean of {row['n_frames']} frames. " + details
    text = (f"{row['decision'].upper()} (P(attack) = {row['score']:.3f}, threshold {row['threshold']:.3f} from "
            f"{row['threshold_source']}; detector {first.detector})")
    return text, float(row["score"]), first.crop, cue, details


def build_app(model, frames: int = 8):
    import gradio as gr

    def run(path):
        if path is None:
            return "upload an image or a video", None, None, None, ""
        return score_file(model, path, frames)

    return gr.Interface(
        fn=run,
        inputs=gr.File(label="image or short video", type="filepath"),
        outputs=[gr.Textbox(label="decision"), gr.Number(label="P(attack)"), gr.Image(label="aligned face"),
                 gr.Image(label="cue map (InstructFLIP)"), gr.Textbox(label="explanation / details")],
        title="fasvlm face anti-spoofing demo",
        description=f"{model.method} from {model.source}; score = P(attack); decision at threshold "
                    f"{model.threshold:.3f} ({model.threshold_source}).",
        api_name="predict",
        flagging_mode="never",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fasvlm demo", allow_abbrev=False,
                                description="Gradio app: upload an image or a short video, see the decision.")
    p.add_argument("--model", required=True, help="run directory, checkpoint, export directory or .onnx file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--frames", type=int, default=8, help="frames sampled per video")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the run's)")
    args = p.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("fasvlm demo: error: Gradio is not installed; pip install 'fasvlm[demo]'", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from fasvlm.tools.predict import load_model

    try:
        model = load_model(args.model, threshold=args.threshold)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"fasvlm demo: error: {err}", file=sys.stderr)
        return 2
    build_app(model, args.frames).launch(server_name=args.host, server_port=args.port, share=False,
                                         show_error=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
