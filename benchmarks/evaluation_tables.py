"""Model-card tables from a group-level output: per subject and per reference class.

    python benchmarks/evaluation_tables.py OUTPUT_DIR [--subjects 003 009 ...] [--grid native]

Reads group/desc-evaluation_metrics.tsv and group/desc-tissues_volumes.tsv (written by the group
level through gado_bids.metrics.evaluation) and prints Markdown: PSNR / MAE / SSIM plain and
resolution-matched for ce | clip | clip-and-blur | synthetic, sharpness synthetic/ce per axis,
top end, and |V_real - V| per tissue with the segmentation's repeatability; then the means per
reference class and overall, and per class whether the synthetic image beats the ce scan and the
better baseline; then, where the group level recorded it, each image's segmentation agreement
with the real scan's (Dice per tissue) per subject and per class.
"""
import argparse
from pathlib import Path

import numpy as np

from gado_bids.outputs.group_tables import read_table

IMAGES = ("ce", "clip", "clip-and-blur", "synthetic")


def _rows(output_dir: Path, subjects, grid):
    evaluation = read_table(output_dir / "group" / "desc-evaluation_metrics.tsv")
    volumes = read_table(output_dir / "group" / "desc-tissues_volumes.tsv")
    wanted = {f"sub-{s}" for s in subjects} if subjects else None
    sessions = {}
    for row in evaluation:
        if row["grid"] != grid or (wanted and row["participant_id"] not in wanted):
            continue
        sessions.setdefault(row["participant_id"], {})[row["image"]] = row
    for row in volumes:
        if row["participant_id"] in sessions and row["real_cm3"] != "n/a":
            sessions[row["participant_id"]].setdefault("volumes", {})[row["tissue"]] = row
    return sessions


def _triple(images, metric):
    return " / ".join(images[i][metric] for i in IMAGES)


def _subject_table(sessions) -> str:
    lines = ["| subject | reference | PSNR plain (ce / clip / clip-and-blur / synthetic) | "
             "PSNR matched | MAE % matched | SSIM matched | sharpness synthetic/ce (i, j, k) | "
             "top end % (real / synthetic) | abs(dV) GM ce / synthetic (repeatability) | "
             "WM | CSF |", "|---|---|" + "---|" * 9]
    for subject, images in sorted(sessions.items()):
        synthetic = images["synthetic"]
        volumes = images.get("volumes", {})
        tissue = [f"{v['abs_diff_ce_cm3']} / {v['abs_diff_synthetic_cm3']} "
                  f"({v['repeatability_cm3']})" if v else "n/a"
                  for v in (volumes.get(t) for t in ("GM", "WM", "CSF"))]
        lines.append(
            f"| {subject} | {synthetic['reference_class']} | {_triple(images, 'PSNR')} | "
            f"{_triple(images, 'PSNR_matched')} | {_triple(images, 'MAE_matched')} | "
            f"{_triple(images, 'SSIM_matched')} | "
            f"{', '.join(synthetic[f'sharpness_ratio_{a}'] for a in 'ijk')} | "
            f"{images['reference']['top_end_percent']} / {synthetic['top_end_percent']} | "
            + " | ".join(tissue) + " |")
    return "\n".join(lines)


def _mean(sessions, image, metric):
    return float(np.mean([float(s[image][metric]) for s in sessions]))


def _class_table(sessions) -> str:
    classes = {}
    for images in sessions.values():
        classes.setdefault(images["synthetic"]["reference_class"], []).append(images)
    lines = ["| reference class | n | PSNR plain (ce / clip / clip-and-blur / synthetic) | "
             "PSNR matched | synthetic beats ce on plain MAE+PSNR+SSIM | synthetic matched PSNR "
             "minus the better baseline | sharpness synthetic/ce (i, j, k) | "
             "mean abs(dV) cm3, ce / synthetic / repeatability: GM; WM; CSF |",
             "|---|---:|---|---|---:|---:|---|---|"]
    for name, chosen in sorted(classes.items()) + [("all", list(sessions.values()))]:
        plain = " / ".join(f"{_mean(chosen, i, 'PSNR'):.2f}" for i in IMAGES)
        matched = " / ".join(f"{_mean(chosen, i, 'PSNR_matched'):.2f}" for i in IMAGES)
        beats = sum(float(s["synthetic"]["MAE"]) < float(s["ce"]["MAE"]) and
                    float(s["synthetic"]["PSNR"]) > float(s["ce"]["PSNR"]) and
                    float(s["synthetic"]["SSIM"]) > float(s["ce"]["SSIM"]) for s in chosen)
        margin = np.mean([float(s["synthetic"]["PSNR_matched"]) -
                          max(float(s["clip"]["PSNR_matched"]),
                              float(s["clip-and-blur"]["PSNR_matched"])) for s in chosen])
        sharp = ", ".join(f"{_mean(chosen, 'synthetic', f'sharpness_ratio_{a}'):.3f}"
                          for a in "ijk")
        volume_cells = []
        for tissue in ("GM", "WM", "CSF"):
            rows = [s["volumes"][tissue] for s in chosen if tissue in s.get("volumes", {})]
            if not rows:
                volume_cells.append("n/a")
                continue
            values = [np.mean([float(r[c]) for r in rows]) for c in
                      ("abs_diff_ce_cm3", "abs_diff_synthetic_cm3", "repeatability_cm3")]
            volume_cells.append(" / ".join(f"{v:.1f}" for v in values))
        lines.append(f"| {name} | {len(chosen)} | {plain} | {matched} | {beats}/{len(chosen)} | "
                     f"{margin:+.2f} | {sharp} | {'; '.join(volume_cells)} |")
    return "\n".join(lines)


def _agreement_table(sessions) -> str:
    """Dice with the real scan's labels, ce -> synthetic, per subject then per class mean; empty
    for group outputs made before the Dice was recorded."""
    def dice(images, tissue, image):
        value = images.get("volumes", {}).get(tissue, {}).get(f"dice_{image}", "n/a")
        return None if value == "n/a" else float(value)
    if all(dice(images, "GM", "ce") is None for images in sessions.values()):
        return ""
    lines = ["| subject or class | reference | n | Dice with the real labels, ce -> synthetic: "
             "GM | WM | CSF |", "|---|---|---:|---|---|---|"]
    classes = {}
    for subject, images in sorted(sessions.items()):
        reference_class = images["synthetic"]["reference_class"]
        classes.setdefault(reference_class, []).append(images)
        cells = [" -> ".join("n/a" if v is None else f"{v:.3f}"
                             for v in (dice(images, t, "ce"), dice(images, t, "synthetic")))
                 for t in ("GM", "WM", "CSF")]
        lines.append(f"| {subject} | {reference_class} | 1 | " + " | ".join(cells) + " |")
    for name, chosen in sorted(classes.items()) + [("all", list(sessions.values()))]:
        paired = {t: [s for s in chosen if None not in (dice(s, t, "ce"),
                                                        dice(s, t, "synthetic"))]
                  for t in ("GM", "WM", "CSF")}
        cells = [f"{np.mean([dice(s, t, 'ce') for s in paired[t]]):.3f} -> "
                 f"{np.mean([dice(s, t, 'synthetic') for s in paired[t]]):.3f}"
                 if paired[t] else "n/a" for t in ("GM", "WM", "CSF")]
        lines.append(f"| mean | {name} | {len(chosen)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--subjects", nargs="*", default=None)
    parser.add_argument("--grid", choices=("native", "template"), default="native")
    args = parser.parse_args(argv)
    sessions = _rows(args.output_dir, args.subjects, args.grid)
    if not sessions:
        parser.error(f"no evaluated session in {args.output_dir} (run the group level first)")
    print(f"## {args.grid} grid, {len(sessions)} session(s)\n")
    print(_subject_table(sessions) + "\n")
    print(_class_table(sessions))
    agreement = _agreement_table(sessions)
    if agreement:
        print("\n" + agreement)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
