"""What happened to each participant, and the exit code that follows from it."""
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gado_bids import __version__, atomic
from gado_bids.errors import ExitCode
from gado_bids.outputs import spec

LOG = logging.getLogger("gadosynth")


@dataclass
class ParticipantResult:
    label: str
    status: str  # "succeeded" | "skipped" | "failed"
    reason: str = ""
    seconds: float = 0.0


@dataclass
class RunSummary:
    results: list = field(default_factory=list)

    def add(self, label, status, reason="", seconds=0.0):
        result = ParticipantResult(label, status, reason, seconds)
        self.results.append(result)
        return result

    def count(self, status):
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.FAILURE if self.count("failed") else ExitCode.SUCCESS

    def log(self):
        LOG.info("summary: %d succeeded, %d skipped, %d failed", self.count("succeeded"),
                 self.count("skipped"), self.count("failed"))
        for result in self.results:
            line = f"  sub-{result.label}: {result.status}"
            if result.seconds:
                line += f" ({result.seconds:.1f} s)"
            if result.reason:
                line += f" - {result.reason}"
            (LOG.error if result.status == "failed" else LOG.info)(line)


def record_status(output_dir: Path, result: ParticipantResult):
    """Leave the participant's outcome where the group level can name failures, not guess."""
    atomic.write_json(spec.participant_status(output_dir, result.label), {
        **asdict(result), "seconds": round(result.seconds, 1), "gadosynth": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


def recorded_status(output_dir: Path, label: str):
    """The last participant-level outcome recorded for this participant, or None."""
    try:
        return json.loads(spec.participant_status(output_dir, label).read_text())
    except (OSError, ValueError):
        return None
