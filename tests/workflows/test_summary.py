"""workflows.summary: per-participant outcomes, the run's exit code, the recorded status."""
import json
import logging

from gado_bids.errors import ExitCode
from gado_bids.workflows.summary import RunSummary, record_status, recorded_status


def test_exit_code_is_failure_only_when_a_participant_failed():
    summary = RunSummary()
    summary.add("01", "succeeded", seconds=3.0)
    summary.add("02", "skipped", "outputs already complete")
    assert summary.exit_code == ExitCode.SUCCESS
    summary.add("03", "failed", "corrupt NIfTI")
    assert summary.exit_code == ExitCode.FAILURE
    assert [summary.count(s) for s in ("succeeded", "skipped", "failed")] == [1, 1, 1]


def test_log_names_every_participant_with_its_reason(caplog):
    summary = RunSummary()
    summary.add("01", "succeeded", seconds=12.34)
    summary.add("02", "failed", "registration failed")
    with caplog.at_level(logging.INFO, logger="gadosynth"):
        summary.log()
    assert "1 succeeded, 0 skipped, 1 failed" in caplog.text
    assert "sub-01: succeeded (12.3 s)" in caplog.text
    failed = [r for r in caplog.records if "sub-02" in r.getMessage()]
    assert failed[0].levelno == logging.ERROR and "registration failed" in failed[0].getMessage()


def test_status_is_recorded_where_the_group_level_reads_it(tmp_path):
    assert recorded_status(tmp_path, "01") is None
    record_status(tmp_path, RunSummary().add("01", "failed", "no brain found", 4.56))
    status = recorded_status(tmp_path, "01")
    assert (status["status"], status["reason"], status["seconds"]) == ("failed",
                                                                       "no brain found", 4.6)
    path = tmp_path / "logs" / "sub-01_participant-status.json"
    assert json.loads(path.read_text())["gadosynth"]
    path.write_text("{half written")
    assert recorded_status(tmp_path, "01") is None
