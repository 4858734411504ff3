"""gadosynth: synthetic non-contrast T1w from gadolinium-enhanced T1w, as a BIDS App."""
from importlib import metadata as _metadata
from pathlib import Path as _Path


def _read_version() -> str:
    # A source checkout carries the top-level `version` file; an installed wheel carries metadata.
    source_version = _Path(__file__).resolve().parent.parent / "version"
    if source_version.is_file():
        return source_version.read_text().strip()
    try:
        return _metadata.version("gadosynth")
    except _metadata.PackageNotFoundError:  # pragma: no cover - only in a broken install
        return "0+unknown"


__version__ = _read_version()
