"""Ground-truth tissue maps of simulated sessions (the demo's), found in the input dataset.

Only a derivative folder whose dataset_description names the demo simulator as its generator is
read: other pipelines (fMRIPrep, FreeSurfer exports) write probseg files too, and those are
estimates, not truth.
"""
import json
from pathlib import Path
from typing import Optional

TRUTH_PIPELINE = "gadosynth-demo"
TRUTH_TISSUES = ("CSF", "GM", "WM")


def probseg_name(subject: str, session: Optional[str], tissue: str) -> str:
    """BIDS name of a session's tissue probability map (subject and session without prefix)."""
    session_part = f"_ses-{session}" if session else ""
    return f"sub-{subject}{session_part}_label-{tissue}_probseg.nii.gz"


def simulation_folders(bids_dir: Path) -> tuple:
    """The dataset's simulator-made derivative folders (read once per selection, not per scan)."""
    folders = []
    for description in sorted((Path(bids_dir) / "derivatives").glob("*/dataset_description.json")):
        try:
            generators = json.loads(description.read_text()).get("GeneratedBy") or []
        except (OSError, ValueError):
            continue
        if any(isinstance(g, dict) and g.get("Name") == TRUTH_PIPELINE for g in generators):
            folders.append(description.parent)
    return tuple(folders)


def truth_tissue_maps(bids_dir: Path, subject: str, session: Optional[str],
                      folders: Optional[tuple] = None) -> Optional[dict]:
    """{tissue: path} of the session's simulated tissue maps, or None unless all three exist.
    folders: simulation_folders(bids_dir), when the caller looks up many sessions."""
    for folder in (simulation_folders(bids_dir) if folders is None else folders):
        anat = folder / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
        paths = {t: anat / probseg_name(subject, session, t) for t in TRUTH_TISSUES}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None
