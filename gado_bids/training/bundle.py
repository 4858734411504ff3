"""Turn a finished training run into bundled weights: copy, checksum, manifest, model card rows.

    python -m gado_bids.training.bundle WORK_DIR [WORK_DIR ...]

Each WORK_DIR is a gadosynth-train output (best.pt, summary.json, split.json). The weights file
is copied into gado_bids/weights/<model>.pt, its SHA-256 pinned in manifest.json together with the
exact command, seed, hardware and time, and the validation table printed as Markdown for the
model card.
"""
import json
import shutil
import sys
from pathlib import Path

from gado_bids import atomic, hashing
from gado_bids.model.weights import BUNDLED_DIR, MANIFEST


def markdown_table(summary: dict) -> str:
    """Per validation subject and per reference class: PSNR plain / matched of every image on
    the network's grid (metrics.evaluation; a secondary view of the native-grid numbers)."""
    from gado_bids.metrics.evaluation import COMPARED
    from gado_bids.training.validation import table_lines
    head = ("| subject | reference | " + " | ".join(f"{i} PSNR plain / matched" for i in COMPARED)
            + " | sharpness synthetic/ce (weakest axis) |\n|---|---|" + "---:|" * 5 + "\n")
    body = ""
    for subject, n, reference_class, psnr, sharpness in table_lines(summary["validation"]):
        label = f"sub-{subject}" if subject else f"**mean** (n={n})"
        cells = " | ".join(f"{psnr[i][0]:.2f} / {psnr[i][1]:.2f}" for i in COMPARED)
        body += f"| {label} | {reference_class} | {cells} | {sharpness:.3f} |\n"
    return head + body


def training_dataset_name(command: str) -> str:
    """The Name in the training dataset's dataset_description.json (the command's bids_dir)."""
    arguments = [a for a in command.split()[1:] if not a.startswith("-")]
    description = Path(arguments[0]) / "dataset_description.json" if arguments else None
    if description is None or not description.is_file():
        return ""
    return json.loads(description.read_text()).get("Name", "")


def _fitted_blood_pool(work_dir: Path) -> dict:
    """blood_pool.json when training/blood_pool.py ran on this best.pt ({} when it never ran);
    checked before anything is copied, so a stale record cannot be bundled."""
    path = work_dir / "blood_pool.json"
    if not path.exists():
        return {}
    fitted = json.loads(path.read_text())
    if fitted["weights_sha256"] != hashing.sha256_of(work_dir / "best.pt"):
        raise ValueError(f"{path} was fitted on other weights than {work_dir / 'best.pt'}: "
                         "run training.blood_pool again")
    return fitted


def bundle(work_dir: Path) -> dict:
    work_dir = Path(work_dir)
    summary = json.loads((work_dir / "summary.json").read_text())
    model = summary["config"]["model"]
    fitted = _fitted_blood_pool(work_dir)
    BUNDLED_DIR.mkdir(parents=True, exist_ok=True)
    target = BUNDLED_DIR / f"{model}.pt"
    with atomic.atomic_path(target) as temporary:
        shutil.copyfile(work_dir / "best.pt", temporary)
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    log_lines = (work_dir / "training_log.tsv").read_text().splitlines()[1:]
    manifest[model] = {
        "file": target.name, "sha256": hashing.sha256_of(target),
        "width": summary["config"]["width"], "best_epoch": summary["best_epoch"],
        "command": summary["command"], "seed": summary["config"]["seed"],
        "device": summary["device"], "hardware": summary["hardware"],
        "torch": summary["torch"], "steps": summary["steps"],
        "training_seconds": round(sum(float(l.split("\t")[-1]) for l in log_lines), 1),
        "training_dataset": training_dataset_name(summary["command"]),
        "formulation": summary["config"].get("formulation", "direct"),
        "grid": "1mm" if summary["config"].get("formulation") == "enhancement" else "128",
        "train_subjects": summary["train_subjects"],
        "validation_subjects": summary["validation_subjects"]}
    config = summary["config"]
    if config.get("curve_top_floor"):  # load_weights reads it from the file; shown here too
        manifest[model]["curve_top_floor"] = config["curve_top_floor"]
    if summary.get("borrow_from_sha256"):  # the weights whose layers this run started from
        manifest[model]["borrow_from_sha256"] = summary["borrow_from_sha256"]
        manifest[model]["borrow"] = summary["borrow"]
    if fitted:
        manifest[model]["grey_matter_enhancement"] = fitted["grey_matter_enhancement"]
        manifest[model]["grey_matter_enhancement_pairs"] = [p["subject"] for p in fitted["pairs"]]
    split = work_dir / "split.json"
    if split.exists():
        split = json.loads(split.read_text())
        classes = split.get("reference_class", {})
        manifest[model]["validation_reference_class"] = {
            s: classes.get(s) for s in summary["validation_subjects"]}
        if "training_pairs" in split:  # the pairs crops came from, when not all
            manifest[model]["training_pairs"] = split["training_pairs"]
    atomic.write_json(MANIFEST, manifest)
    return manifest[model]


def main(argv=None) -> int:
    for work_dir in (argv if argv is not None else sys.argv[1:]):
        entry = bundle(Path(work_dir))
        summary = json.loads((Path(work_dir) / "summary.json").read_text())
        print(f"bundled {entry['file']} ({entry['sha256']})\n")
        print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
