"""Which scans to process: every ce-<label> T1w, each paired with its session's non-contrast T1w.

pybids names the BIDS `ce` entity `ceagent`; `Query.NONE` selects files without it.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bids import BIDSLayout
from bids.exceptions import BIDSValidationError
from bids.layout import Query

from gado_bids.discovery.simulation_truth import simulation_folders, truth_tissue_maps
from gado_bids.errors import ExitCode, GadoError

LOG = logging.getLogger(__name__)
FILTER_QUERIES = ("ce_t1w", "t1w")
# Entities that distinguish two T1w scans of one session; used to pick the matching reference.
PAIRING_ENTITIES = ("acquisition", "reconstruction", "run")


@dataclass(frozen=True)
class ScanJob:
    """One contrast-enhanced scan to translate, and the real non-contrast scan to compare with."""

    subject: str
    session: Optional[str]
    ce_path: Path
    entities: dict = field(hash=False, compare=False)
    reference_path: Optional[Path] = None
    # {tissue: probseg path} where the dataset is a simulation that knows its anatomy (the demo)
    truth_tissue_maps: Optional[dict] = field(default=None, hash=False, compare=False)

    @property
    def key(self) -> str:
        return self.ce_path.name.split(".nii")[0]


@dataclass
class Selection:
    jobs_by_subject: dict  # subject label -> [ScanJob]
    subjects_without_ce: list  # requested or existing subjects with no ce- scan: reported, skipped
    # selected subjects whose files the BIDS validator found broken: label -> its message
    invalid_participants: dict = field(default_factory=dict)


def load_filter_file(path: Optional[Path]) -> dict:
    if path is None:
        return {}
    try:
        filters = json.loads(Path(path).read_text())
    except OSError as error:
        raise GadoError(f"cannot read --bids_filter_file '{path}': {error.strerror}",
                        ExitCode.USAGE) from error
    except json.JSONDecodeError as error:
        raise GadoError(f"--bids_filter_file '{path}' is not valid JSON: {error}",
                        ExitCode.USAGE) from error
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise GadoError(f"--bids_filter_file '{path}' must be a JSON object of objects, e.g. "
                        '{"ce_t1w": {"acquisition": "mprage"}}', ExitCode.USAGE)
    unknown = sorted(set(filters) - set(FILTER_QUERIES))
    if unknown:
        raise GadoError(f"--bids_filter_file '{path}' has unknown queries {unknown}: "
                        f"use {list(FILTER_QUERIES)}", ExitCode.USAGE)
    for query in filters.values():
        for entity, value in list(query.items()):
            if value is None:  # JSON null means 'must not have this entity'
                query[entity] = Query.NONE
            elif value == "*":
                query[entity] = Query.ANY
    return filters


def open_layout(bids_dir: Path) -> BIDSLayout:
    try:
        # Validation is ours (discovery.validation): pybids' own would silently drop files.
        return BIDSLayout(str(bids_dir), validate=False)
    except BIDSValidationError as error:
        raise GadoError(f"pybids cannot read '{bids_dir}' as a BIDS dataset: {error}",
                        ExitCode.VALIDATION_FAILED) from error


def _query(layout, filters: dict, name: str, **base):
    query = {**base, **filters.get(name, {})}
    try:
        return layout.get(**query)
    except (ValueError, TypeError) as error:
        raise GadoError(f"--bids_filter_file: the '{name}' filters {filters.get(name)} are not "
                        f"valid pybids filters ({error})", ExitCode.USAGE) from error


def _pick_reference(job_entities: dict, candidates: list):
    if not candidates:
        return None
    def distance(candidate):
        return sum(candidate.entities.get(e) != job_entities.get(e) for e in PAIRING_ENTITIES)
    ranked = sorted(candidates, key=lambda c: (distance(c), c.path))
    if len(ranked) > 1:
        LOG.info("%d non-contrast T1w for %s; using %s", len(ranked),
                 Path(job_entities["_path"]).name, Path(ranked[0].path).name)
    return Path(ranked[0].path)


def _chosen_subjects(layout: BIDSLayout, participant_labels) -> list:
    all_subjects = sorted(layout.get_subjects())
    if not all_subjects:
        raise GadoError(f"the dataset '{layout.root}' holds no subject folders (sub-*)",
                        ExitCode.NO_INPUT)
    if not participant_labels:
        return all_subjects
    unknown = sorted(set(participant_labels) - set(all_subjects))
    if unknown:
        raise GadoError(
            f"participant label(s) {', '.join(unknown)} not found in '{layout.root}'. "
            f"Labels that exist: {', '.join(all_subjects)}", ExitCode.NOTHING_SELECTED)
    return sorted(set(participant_labels))


def _check_sessions(layout: BIDSLayout, subjects, session_labels):
    known_sessions = set(layout.get_sessions(subject=subjects))
    unknown = sorted(set(session_labels) - known_sessions)
    if unknown:
        raise GadoError(
            f"session label(s) {', '.join(unknown)} not found for the selected participants. "
            f"Sessions that exist: {', '.join(sorted(known_sessions)) or 'none'}",
            ExitCode.NOTHING_SELECTED)


def _nothing_selected(layout: BIDSLayout, ce_label: str) -> GadoError:
    """Why no scan was selected: none in the dataset (with the ce labels it has), or none left
    by the selection."""
    any_ce = layout.get(suffix="T1w", ceagent=ce_label, extension=[".nii", ".nii.gz"])
    if not any_ce:
        ce_values = sorted(layout.get_ceagents()) if hasattr(layout, "get_ceagents") else []
        hint = f" (ce labels present: {', '.join(ce_values)}; see --ce_label)" if ce_values else ""
        return GadoError(f"no contrast-enhanced T1w scan (*_ce-{ce_label}_T1w.nii[.gz]) in "
                         f"'{layout.root}'{hint}: nothing to translate", ExitCode.NO_INPUT)
    return GadoError("the participant/session labels and --bids_filter_file selected no "
                     f"ce-{ce_label} T1w scan: relax the selection", ExitCode.NOTHING_SELECTED)


def select_scans(layout: BIDSLayout, ce_label: str = "gadolinium", participant_labels=None,
                 session_labels=None, filters: Optional[dict] = None) -> Selection:
    filters = filters or {}
    subjects = _chosen_subjects(layout, participant_labels)
    base = dict(subject=subjects, suffix="T1w", extension=[".nii", ".nii.gz"])
    if session_labels:
        _check_sessions(layout, subjects, session_labels)
        base["session"] = list(session_labels)

    ce_files = _query(layout, filters, "ce_t1w", ceagent=ce_label, **base)
    simulations = simulation_folders(Path(layout.root))
    jobs_by_subject = {}
    for bids_file in sorted(ce_files, key=lambda f: f.path):
        entities = dict(bids_file.entities)
        entities["_path"] = bids_file.path
        session = entities.get("session")
        references = _query(layout, filters, "t1w", ceagent=Query.NONE,
                            **{**base, "subject": entities["subject"],
                               "session": session if session else Query.NONE})
        job = ScanJob(subject=entities["subject"], session=session, ce_path=Path(bids_file.path),
                      entities={k: v for k, v in entities.items() if not k.startswith("_")},
                      reference_path=_pick_reference(entities, references),
                      truth_tissue_maps=truth_tissue_maps(Path(layout.root),
                                                          entities["subject"], session,
                                                          simulations))
        jobs_by_subject.setdefault(job.subject, []).append(job)

    if not jobs_by_subject:
        raise _nothing_selected(layout, ce_label)
    without_ce = [s for s in subjects if s not in jobs_by_subject]
    for subject in without_ce:
        LOG.warning("sub-%s has no ce-%s T1w scan in the selection: skipped", subject, ce_label)
    return Selection(jobs_by_subject=jobs_by_subject, subjects_without_ce=without_ce)
