"""Group level entry: checks first, then the analysis (group_analysis) inside a private scratch
folder, so that the libraries it loads (ANTs, matplotlib) never need a writable /tmp or HOME."""
from pathlib import Path

from gado_bids import runtime
from gado_bids.errors import ExitCode, GadoError
from gado_bids.outputs import derivatives
from gado_bids.workflows.config import RunConfig
from gado_bids.workflows.inputs import open_input
from gado_bids.workflows.scratch import work_area


def _check_participant_outputs(output_dir: Path):
    if not (output_dir / "dataset_description.json").is_file():
        raise GadoError(f"'{output_dir}' holds no gadosynth participant-level outputs: run the "
                        "participant level first", ExitCode.NO_INPUT)


def run_group_level(args: RunConfig) -> int:
    bids_dir, description, selection = open_input(args)
    output_dir = derivatives.check_output_location(bids_dir, args.output_dir)
    _check_participant_outputs(output_dir)
    derivatives.ensure_writable_dir(output_dir / "group", "the group output folder")
    with work_area(output_dir, args.work_dir, args.keep_work) as work_dir:
        runtime.redirect_scratch(work_dir)
        from gado_bids.workflows.group_analysis import analyse_group
        return analyse_group(args, selection, description, output_dir)
