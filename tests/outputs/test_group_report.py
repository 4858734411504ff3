"""The group report page from hand-made rows: what is left out and why, the tables per
reference class, each session's row and images."""
import numpy as np

from gado_bids.outputs import group_figures, group_report
from gado_bids.workflows import group_rows
from workflows.test_group_rows import _ids, session_rows


def _inputs():
    similarity, evaluation, volumes = session_rows()
    sessions = [{**_ids(n), "status": "measured", "reason": ""} for n in (1, 2, 3)]
    sessions.append({**_ids(4), "status": "participant_level_failed",
                     "reason": "mask <empty> & no brain"})
    statistics = group_rows.statistics_rows(similarity, volumes, evaluation)
    summary = group_rows.formatted(group_rows.evaluation_summary(evaluation))
    return (sessions, group_rows.formatted(similarity), group_rows.formatted(volumes),
            statistics, summary)


def test_report_names_every_session_and_why_one_is_left_out(tmp_path):
    sessions, similarity, volumes, statistics, summary = _inputs()
    picture = group_figures.thumbnail([np.full((60, 70), 0.5)] * 3, np.ones((60, 70), bool))
    page = group_report.write_group_report(
        tmp_path / "report.html", sessions, similarity, volumes, statistics,
        {"sub-1_ce.nii.gz": picture}, summary).read_text()
    assert "Sessions: 3 measured, 1 participant_level_failed" in page
    assert "mask &lt;empty&gt; &amp; no brain" in page  # escaped, never raw markup
    for title in group_report.SUBSET_TITLES.values():
        if title.startswith(("All", "Sessions whose")):
            assert title in page
    for row in similarity:  # the TSV's own strings in every session row
        assert f'<tr id="{row["ce_scan"]}">' in page and f">{row['PSNR_synthetic']}<" in page
    assert page.count('class="thumb"') == 1 and 'href="#images-sub-1_ce"' in page
    assert 'href="sub-2.html">QC page</a>' in page  # no thumbnail: the QC page instead
    assert "Bland-Altman" in page and "Table 2" in page
    assert ">Dice(synthetic, real)</th>" in page and ">0.9300 ± 0.0100<" in page


def test_report_without_pairs_says_there_is_nothing_to_compare(tmp_path):
    sessions = [{**_ids(1), "status": "no_non_contrast", "reason": "no non-contrast T1w"}]
    page = group_report.write_group_report(tmp_path / "report.html", sessions, [], [], [],
                                           {}).read_text()
    assert "nothing to compare" in page and "Bland-Altman" not in page
    assert "no_non_contrast - no non-contrast T1w" in page

