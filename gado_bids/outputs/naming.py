"""BIDS Derivatives file names.

Outputs keep the source scan's entities (sub, ses, acq, ce, rec, run) so that each one names the
scan it came from, then add derivative entities in the BIDS order: from/to/mode for transforms,
space, res, label, desc. Examples (documented in README):
  sub-01_ses-01_ce-gadolinium_space-MNI152NLin2009aSym_desc-synthetic_T1w.nii.gz
  sub-01_ses-01_ce-gadolinium_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.mat
"""
from pathlib import Path

SOURCE_ENTITIES = (("subject", "sub"), ("session", "ses"), ("acquisition", "acq"),
                   ("ceagent", "ce"), ("reconstruction", "rec"), ("run", "run"))
DERIVED_ENTITIES = ("from", "to", "mode", "space", "res", "label", "desc")


def _format_run(value) -> str:
    return f"{int(value):02d}" if str(value).isdigit() else str(value)


def derivative_name(source_entities: dict, suffix: str, extension: str, **derived) -> str:
    unknown = set(derived) - set(DERIVED_ENTITIES)
    if unknown:
        raise ValueError(f"not derivative entities: {sorted(unknown)}")
    parts = []
    for entity, key in SOURCE_ENTITIES:
        value = source_entities.get(entity)
        if value not in (None, ""):
            parts.append(f"{key}-{_format_run(value) if key == 'run' else value}")
    for key in DERIVED_ENTITIES:
        value = derived.get(key)
        if value not in (None, ""):
            parts.append(f"{key}-{value}")
    return "_".join(parts + [suffix]) + extension


def subject_session_dir(output_dir: Path, source_entities: dict, datatype: str = "anat") -> Path:
    folder = Path(output_dir) / f"sub-{source_entities['subject']}"
    if source_entities.get("session"):
        folder = folder / f"ses-{source_entities['session']}"
    return folder / datatype


def derivative_path(output_dir: Path, source_entities: dict, suffix: str, extension: str,
                    **derived) -> Path:
    return subject_session_dir(output_dir, source_entities) / derivative_name(
        source_entities, suffix, extension, **derived)


def group_paths(output_dir: Path) -> dict:
    folder = Path(output_dir) / "group"
    return {"sessions": folder / "desc-sessions_status.tsv",
            "similarity": folder / "desc-similarity_metrics.tsv",
            "volumes": folder / "desc-tissues_volumes.tsv",
            "statistics": folder / "desc-paired_statistics.tsv",
            "evaluation": folder / "desc-evaluation_metrics.tsv",
            "evaluation_summary": folder / "desc-evaluation_summary.tsv",
            "report": Path(output_dir) / "group_report.html"}
