"""What happened to each participant, and the exit code that follows from it."""
import logging
from dataclasses import dataclass, field

from gado_bids.errors import ExitCode

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
        self.results.append(ParticipantResult(label, status, reason, seconds))

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
