"""The checks both levels start with: a readable BIDS input, a usable output location, the
validator's verdict and the selected scans."""
import logging
import time

from gado_bids.discovery import selection as discovery
from gado_bids.discovery.validation import (check_bids_dir_readable, read_dataset_description,
                                            validate_bids_dataset)
from gado_bids.outputs import derivatives

LOG = logging.getLogger("gadosynth")


def open_input(args):
    """Checks shared by both levels: readable BIDS input, usable output location, the selection.
    The selection's invalid_participants holds the validator's errors about single
    participants' files (those participants fail; the others go on)."""
    bids_dir = check_bids_dir_readable(args.bids_dir)
    derivatives.check_output_location(bids_dir, args.output_dir)
    description = read_dataset_description(bids_dir)
    # The user's own filter file first: its mistakes are usage errors, found without waiting
    # for the validator.
    filters = discovery.load_filter_file(args.bids_filter_file)
    invalid_participants = {}
    if args.skip_bids_validator:
        LOG.info("BIDS validation skipped (--skip_bids_validator)")
    else:
        started = time.time()
        invalid_participants = validate_bids_dataset(bids_dir)
        LOG.info("input dataset passed BIDS validation%s (%.1f s)",
                 f" except for {len(invalid_participants)} participant(s)"
                 if invalid_participants else "", time.time() - started)
    layout = discovery.open_layout(bids_dir)
    selection = discovery.select_scans(layout, ce_label=args.ce_label,
                                       participant_labels=args.participant_label,
                                       session_labels=args.session_label, filters=filters)
    selection.invalid_participants = {subject: message for subject, message in
                                      invalid_participants.items()
                                      if subject in selection.jobs_by_subject}
    return bids_dir, description, selection
