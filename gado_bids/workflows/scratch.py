"""One private scratch folder per run, for both levels.

Everything that spills to disk (ANTs registration and segmentation, matplotlib, torch's compiler
caches, the BIDS validator) is pointed into it before those libraries are imported
(runtime.redirect_scratch): in a read-only container (`docker run --read-only`) only the output
and work folders are writable, and /tmp may not be.
"""
import contextlib
import logging
import shutil
import tempfile
from pathlib import Path

from gado_bids import atomic
from gado_bids.outputs import derivatives

LOG = logging.getLogger("gadosynth")
KEPT_MARKER = "KEPT"


def _remove_abandoned_work_areas(parent: Path):
    """Scratch folders of runs on this host whose process is gone (SIGKILL, node crash)."""
    for folder in parent.glob(".gadosynth-work-*"):
        if (folder / KEPT_MARKER).exists():
            continue  # kept on request (--keep_work): the user's to remove
        if atomic.owner_is_gone(folder.name[len(".gadosynth-work-"):]):
            LOG.info("removing the scratch folder of a run that was killed: %s", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def work_area(output_dir: Path, requested: Path, keep: bool):
    """A private scratch folder per run; removed at the end unless --keep_work."""
    parent = derivatives.ensure_writable_dir(Path(requested) if requested else output_dir,
                                             "the work folder")
    for place in {parent, Path(output_dir)}:  # the default place, and the one asked for now
        _remove_abandoned_work_areas(place)
    folder = Path(tempfile.mkdtemp(prefix=f".gadosynth-work-{atomic.owner_tag()}-", dir=parent))
    try:
        yield folder
    finally:
        if keep:
            (folder / KEPT_MARKER).write_text("kept by --keep_work\n")
            LOG.info("intermediate files kept in %s", folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)
