"""Group level: for now an inventory of what the participant level produced.

The similarity metrics, tissue volumes and report of the paper's Tables 1-2 build on this
inventory (issue: group level).
"""
import logging

from gado_bids.errors import ExitCode, GadoError
from gado_bids.outputs import atomic, derivatives
from gado_bids.workflows.participant import open_input
from gado_bids.workflows.scan import is_complete, planned_outputs

LOG = logging.getLogger("gadosynth")


def run_group_level(args) -> int:
    bids_dir, _, selection = open_input(args)
    output_dir = derivatives.check_output_location(bids_dir, args.output_dir)
    if not (output_dir / "dataset_description.json").is_file():
        raise GadoError(f"'{output_dir}' holds no gadosynth participant-level outputs: run the "
                        "participant level first", ExitCode.NO_INPUT)
    rows = ["participant_id\tsession_id\tce_scan\thas_reference\tparticipant_level"]
    missing = []
    for subject, jobs in sorted(selection.jobs_by_subject.items()):
        for job in jobs:
            complete = is_complete(job, output_dir)
            if not complete:
                missing.append(job.key)
            rows.append("\t".join([f"sub-{subject}", f"ses-{job.session}" if job.session else "n/a",
                                   job.ce_path.name, str(bool(job.reference_path)).lower(),
                                   "complete" if complete else "missing"]))
    inventory = output_dir / "group" / "desc-inventory_scans.tsv"
    derivatives.ensure_writable_dir(inventory.parent, "the group output folder")
    atomic.write_bytes(inventory, ("\n".join(rows) + "\n").encode())
    LOG.info("group inventory: %d scan(s), %d without complete participant-level outputs -> %s",
             len(rows) - 1, len(missing), inventory)
    for key in missing:
        LOG.warning("  participant level missing or incomplete for %s", key)
    return int(ExitCode.SUCCESS)
