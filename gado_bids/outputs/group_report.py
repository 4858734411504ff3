"""The group report: one self-contained offline HTML page (figures inlined as PNG).

Laid out like the paper: Table 1 (similarity to the real non-contrast scan, ce vs synthetic,
plain and resolution-matched) and Table 2 (tissue volume errors with Bonferroni-corrected paired
t-tests, beside the segmentation's repeatability), then every image against the two baselines
with sharpness and top end, per subset of sessions (overall and per reference class);
box plots; a Bland-Altman plot per tissue; then one row per session, and each session's images
at full resolution (with a zoomed cortical patch) linking to
its participant QC page. Table cells print the TSVs' own strings (tests compare them).
"""
import html
from pathlib import Path

import numpy as np

from gado_bids import __version__, atomic
from gado_bids.metrics.tissues import MASK_EROSION_VOXELS, TISSUES
from gado_bids.outputs.group_figures import METRICS, ZOOM, bland_altman, box_plots

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
         "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
         "td{white-space:nowrap}"
         "th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%}.warn{color:#a40}"
         "img.thumb{max-width:none;image-rendering:pixelated}figure{margin:1em 0;overflow-x:auto}"
         ".wide{overflow-x:auto}")


def _table(header, rows, left_columns=1, row_ids=None) -> str:
    head = "".join(f'<th class="{"l" if i < left_columns else ""}">{html.escape(h)}</th>'
                   for i, h in enumerate(header))
    body = []
    for index, row in enumerate(rows):
        cells = "".join(f'<td class="{"l" if i < left_columns else ""}">{cell}</td>'
                        for i, cell in enumerate(row))
        identifier = f' id="{html.escape(row_ids[index])}"' if row_ids else ""
        body.append(f"<tr{identifier}>{cells}</tr>")
    return f"<div class='wide'><table><tr>{head}</tr>{''.join(body)}</table></div>"


def _mean_sd(row, image) -> str:
    mean, sd = row[f"{image}_mean"], row[f"{image}_sd"]
    return html.escape(mean if sd == "n/a" else f"{mean} ± {sd}")


SUBSET_TITLES = {"all": "All measured sessions",
                 "reference:3D": "Sessions whose real non-contrast scan is a sharp 3D scan",
                 "reference:thick-slice": "Sessions whose real non-contrast scan is thick-slice "
                                          "(resampled; blurred through-plane)",
                 "validation": "Subjects held out from training the bundled weights",
                 "training": "Subjects used to train the bundled weights (optimistic)",
                 "unseen": "Subjects the bundled weights never saw"}


def in_subset(row, subset) -> bool:
    if subset == "all":
        return True
    if subset.startswith("reference:"):
        return row.get("reference_class") == subset.split(":", 1)[1]
    return row.get("weights_role") == subset


def _similarity_table(rows, title) -> str:
    table = [[label] + [_mean_sd(rows[m], image) for m, _ in METRICS]
             for image, label in (("ce", "contrast-enhanced vs real"),
                                  ("synthetic", "synthetic vs real"))]
    table += [["p (Bonferroni)"] + [html.escape(rows[m]["p_bonferroni"]) for m, _ in METRICS]]
    return (f"<h4>{title} (n = {rows['MAE']['n']}, mean ± SD)</h4>" +
            _table(["image"] + [label for _, label in METRICS], table))


def _mean_sd_of(values) -> str:
    if not values:
        return "n/a"
    mean = np.mean(values)
    return html.escape(f"{mean:.2f} ± {np.std(values, ddof=1):.2f}" if len(values) > 1
                       else f"{mean:.2f}")


def _repeatability(volume_rows, tissue) -> str:
    return _mean_sd_of([float(r["repeatability_cm3"]) for r in volume_rows
                        if r["tissue"] == tissue and r.get("repeatability_cm3", "n/a") != "n/a"])


TRUTH_IMAGES = ("real", "ce", "synthetic")


def truth_table(volume_rows) -> str:
    """|V - V_truth| per tissue and image, where the input simulation recorded its anatomy."""
    with_truth = [r for r in volume_rows if r.get("truth_cm3", "n/a") != "n/a"]
    if not with_truth:
        return ""
    table = []
    for tissue in TISSUES:
        rows = [r for r in with_truth if r["tissue"] == tissue]
        table.append([tissue, _mean_sd_of([float(r["truth_cm3"]) for r in rows])] + [
            _mean_sd_of([abs(float(r[f"{image}_cm3"]) - float(r["truth_cm3"])) for r in rows
                         if r.get(f"{image}_cm3", "n/a") != "n/a"]) for image in TRUTH_IMAGES])
    sessions = len({r["ce_scan"] for r in with_truth})
    return (f"<h4>Tissue volumes against the simulation's ground truth (n = {sessions}; cm³, "
            "the true tissue maps summed over the voxels the images are segmented in; "
            "mean ± SD)</h4>" +
            _table(["tissue", "V_truth"] + [f"|V_{image} − V_truth|" for image in TRUTH_IMAGES],
                   table))


def paper_tables(statistics_rows, subset, volume_rows=()) -> str:
    rows = [r for r in statistics_rows if r["subset"] == subset]
    similarity = {r["measure"]: r for r in rows if r["table"] == "similarity"}
    matched = {r["measure"]: r for r in rows if r["table"] == "similarity_matched"}
    volumes = {r["measure"]: r for r in rows if r["table"] == "volume_error"}
    agreement = {r["measure"]: r for r in rows if r["table"] == "segmentation_agreement"}
    chosen_volumes = [r for r in volume_rows if in_subset(r, subset)]
    parts = []
    if similarity:
        parts.append(_similarity_table(similarity, "Table 1: similarity to the real "
                                                   "non-contrast scan, native grid"))
    if matched:
        parts.append(_similarity_table(matched, "Table 1, resolution-matched: each image "
                                                "blurred to the reference's resolution first"))
    if volumes:
        table2 = [[t, _mean_sd(volumes[t], "ce"), _mean_sd(volumes[t], "synthetic"),
                   _repeatability(chosen_volumes, t),
                   html.escape(volumes[t]["t"]), html.escape(volumes[t]["p_bonferroni"]),
                   html.escape(volumes[t]["note"])] for t in TISSUES if t in volumes]
        parts.append("<h4>Table 2: absolute tissue volume error against the real non-contrast "
                     "scan (cm³, 1 mm template grid, inside the brain mask less its outer "
                     f"{MASK_EROSION_VOXELS} voxel layers; mean ± SD; paired t-test, "
                     "Bonferroni over 3 tissues). Instrument repeatability: the real scan segmented again after "
                     "a half-voxel shift with 1% noise; errors below it are the "
                     "segmentation's own noise</h4>" +
                     _table(["tissue", "|V_real − V_ce|", "|V_real − V_synthetic|",
                             "repeatability |V_real − V_real,shifted|", "t",
                             "p (Bonferroni)", "note"], table2))
    if agreement:
        rows_of = [[t, _mean_sd(agreement[t], "ce"), _mean_sd(agreement[t], "synthetic"),
                    html.escape(agreement[t]["t"]), html.escape(agreement[t]["p_bonferroni"]),
                    html.escape(agreement[t]["note"])] for t in TISSUES if t in agreement]
        parts.append("<h4>Table 2, voxel by voxel: agreement of each image's segmentation with "
                     "the real scan's (Dice per tissue, the same voxels; higher is better; mean "
                     "± SD; paired t-test, Bonferroni over 3 tissues). Equal volumes can hide "
                     "disagreement: tissue called another in as many voxels as the other way "
                     "round</h4>" +
                     _table(["tissue", "Dice(ce, real)", "Dice(synthetic, real)", "t",
                             "p (Bonferroni)", "note"], rows_of))
    parts.append(truth_table(chosen_volumes))
    return "".join(parts)


SUMMARY_HEADER = ["grid", "image", "n", "MAE (%)", "PSNR (dB)", "SSIM", "MAE matched",
                  "PSNR matched", "SSIM matched", "sharpness / ce (i, j, k)", "top end (%)",
                  "beats ce (plain, all 3)", "beats both baselines (matched PSNR)"]


def evaluation_table(summary_rows, subset) -> str:
    """Every compared image against the baselines, plain and matched, sharpness and top end."""
    rows = [r for r in summary_rows if r["subset"] == subset]
    if not rows:
        return ""
    table = []
    for r in rows:
        sharp = ", ".join(r[f"sharpness_ratio_{axis}_mean"] for axis in "ijk")
        table.append([html.escape(r["grid"]), html.escape(r["image"]), r["n"]] +
                     [html.escape(r[f"{m}_mean"]) for m in ("MAE", "PSNR", "SSIM", "MAE_matched",
                                                              "PSNR_matched", "SSIM_matched")] +
                     [html.escape(sharp), html.escape(r["top_end_percent_mean"]),
                      html.escape(r["better_than_ce"]),
                      html.escape(r["better_than_baselines_matched"])])
    return ("<h4>Every image against the real non-contrast scan: baselines, plain and "
            "resolution-matched (means), sharpness relative to the ce input, top end "
            "(P99.5/P95 − 1)</h4>" + _table(SUMMARY_HEADER, table, left_columns=2))


def _status_section(sessions) -> str:
    counts = {}
    for session in sessions:
        counts[session["status"]] = counts.get(session["status"], 0) + 1
    part = "<p>Sessions: " + ", ".join(f"{n} {html.escape(status)}"
                                       for status, n in sorted(counts.items())) + "</p>"
    excluded = [s for s in sessions if s["status"] != "measured"]
    if excluded:
        part += '<h2>Left out of the paired statistics</h2><ul class="warn">' + "".join(
            f"<li>{html.escape(s['participant_id'])} {html.escape(s['ce_scan'])}: "
            f"{html.escape(s['status'])} - {html.escape(s['reason'])}</li>" for s in excluded) \
            + "</ul>"
    return part


def _tables_section(statistics_rows, similarity_rows, volume_rows, summary_rows) -> str:
    """The paper's tables and the evaluation table, overall then per reference class."""
    order = list(SUBSET_TITLES)
    subsets = sorted({r["subset"] for r in statistics_rows},
                     key=lambda s: (order.index(s) if s in order else len(order), s))
    part = "<h2>Tables (as in Bottani et al. 2022), overall and per reference class</h2>"
    if not similarity_rows:
        part += ('<p class="warn">No session has both a synthetic image and a real '
                 "non-contrast scan: nothing to compare.</p>")
    for subset in subsets:
        part += (f"<h3>{html.escape(SUBSET_TITLES.get(subset, subset))}</h3>" +
                 paper_tables(statistics_rows, subset, volume_rows) +
                 evaluation_table(summary_rows, subset))
    if similarity_rows:
        part += ("<h2>Distributions</h2><img alt='box plots' src='data:image/png;base64,"
                 f"{box_plots(similarity_rows, volume_rows)}'>"
                 "<h2>Bland-Altman, per tissue</h2><p>Solid line: mean difference (bias); "
                 "dotted: bias ± 1.96 SD.</p><img alt='Bland-Altman' "
                 f"src='data:image/png;base64,{bland_altman(volume_rows)}'>")
    return part


def _session_figure(session, picture) -> str:
    subject, scan = html.escape(session["participant_id"]), html.escape(session["ce_scan"])
    anchor = html.escape("images-" + session["ce_scan"].split(".nii")[0])
    return (f'<figure id="{anchor}"><figcaption>{subject} {scan}: ce | synthetic | real; '
            f'below, the boxed cortical patch x{ZOOM}</figcaption><a href="{subject}.html">'
            f'<img class="thumb" alt="session images" src="data:image/png;base64,{picture}">'
            '</a></figure>')


def _sessions_section(sessions, similarity_rows, thumbnails) -> str:
    """One table row per session (with a link to its images or QC page), then the images."""
    similarity_by_scan = {r["ce_scan"]: r for r in similarity_rows}
    header = (["participant", "ce scan", "weights role", "reference", "status"] +
              [f"{m} {image}" for image in ("ce", "synthetic") for m, _ in METRICS] +
              ["images"])
    rows, row_ids, session_figures = [], [], []
    for session in sessions:
        metrics = similarity_by_scan.get(session["ce_scan"])
        subject = session["participant_id"]
        picture = thumbnails.get(session["ce_scan"])
        anchor = "images-" + session["ce_scan"].split(".nii")[0]
        link = (f'<a href="#{html.escape(anchor)}">images</a>' if picture else
                f'<a href="{html.escape(subject)}.html">QC page</a>')
        if picture:
            session_figures.append(_session_figure(session, picture))
        rows.append([html.escape(subject), html.escape(session["ce_scan"]),
                     html.escape(metrics["weights_role"] if metrics else "n/a"),
                     html.escape(metrics["reference_class"] if metrics else "n/a"),
                     html.escape(session["status"])] +
                    [html.escape(metrics[f"{m}_{image}"]) if metrics else "n/a"
                     for image in ("ce", "synthetic") for m, _ in METRICS] + [link])
        row_ids.append(session["ce_scan"])
    part = "<h2>Sessions</h2>" + _table(header, rows, left_columns=5, row_ids=row_ids)
    if session_figures:
        part += ("<h2>Session images at full resolution (1 mm axial slice; each links to the "
                 "participant's QC page)</h2>" + "".join(session_figures))
    return part


def write_group_report(path: Path, sessions, similarity_rows, volume_rows, statistics_rows,
                       thumbnails: dict, summary_rows=()) -> Path:
    """sessions, *_rows: the TSV rows (formatted strings); thumbnails: ce_scan -> PNG base64."""
    body = (f"<h1>gadosynth {__version__}: group report</h1>" + _status_section(sessions) +
            _tables_section(statistics_rows, similarity_rows, volume_rows, summary_rows) +
            _sessions_section(sessions, similarity_rows, thumbnails))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>gadosynth group report"
            f"</title><style>{STYLE}</style></head><body>" + body + "</body></html>")
    return atomic.write_bytes(path, page.encode())
