"""HTML and Markdown renderers: the same sections, tables and figures from one info.

:func:`layout` decides what the report says, in which order (header facts, sections of text, figure
and tables); :func:`render_html` and :func:`render_markdown` only format that. The HTML is one
self-contained file: CSS inline, figures as base64 PNG ``data:`` URIs, no external URL. The
Markdown links the PNGs next to it (``figures/NAME.png``), so it pastes into a paper draft or a
README.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from albsnn.report.figures import FIGURES
from albsnn.report.info import ReportInfo
from albsnn.report.tables import Table, duration, num_bytes, pct

__all__ = ["Section", "layout", "header_facts", "render_html", "render_markdown"]


@dataclass(frozen=True)
class Section:
    title: str
    text: str
    figures: tuple[str, ...]
    tables: tuple[str, ...]


def header_facts(info: ReportInfo) -> list[tuple[str, str]]:
    """``(label, value)`` lines saying what was run, for the top of the report."""
    h = info.header
    facts = [
        ("experiment", h.experiment),
        ("dataset", f"{h.dataset}" + (f" ({h.num_classes} classes)" if h.num_classes else "")),
        ("runs", f"{h.first_start} – {h.last_end}"),
        ("selection", f"{info.selection}: the front, hypervolume and best run never use test accuracy"),
    ]
    for s in h.sweeps:
        p = f"sweep {s.name}" if len(h.sweeps) > 1 else "sweep"
        facts.append(
            (
                p,
                f"{s.name} (parent run {s.run_id}), mode {s.mode or '–'}, pipeline {s.pipeline or '–'}"
                + (f" [{s.pipeline_path}]" if s.pipeline_path else ""),
            )
        )
        if s.objectives:
            facts.append((f"{p}: objectives", ", ".join(f"{k} ({v})" for k, v in s.objectives.items())))
        if s.sampler or s.pruner:
            facts.append((f"{p}: search", f"sampler {s.sampler or '–'}, pruner {s.pruner or '–'}"))
        dirty = " (uncommitted changes)" if s.git_dirty == "true" else ""
        facts.append((f"{p}: code", f"git {s.git_commit or '–'}{dirty}"))
        facts.append((f"{p}: hardware", f"{s.hardware or '–'} on {s.host or '–'}"))
        if s.versions:
            facts.append((f"{p}: versions", ", ".join(f"{k} {v}" for k, v in s.versions.items())))
        facts.append((f"{p}: reproduce", s.command or "– (not recorded)"))
    facts.append(("report", f"generated {h.generated} on {h.report_host} from {h.tracking_uri}"))
    return facts


def layout(info: ReportInfo, tables: dict[str, Table], figures: dict[str, Path]) -> list[Section]:
    """The report's sections in order; one whose figures and tables are all absent is left out."""
    sections = [
        Section("Summary", _summary_text(info), (), ("counts",)),
        Section("Pareto front", _pareto_text(info), ("pareto",), ("pareto",)),
        Section("Seed-confirmed Pareto front", _confirm_text(info), (), ("confirmation",)),
        Section("Hypervolume", _hypervolume_text(info), ("hypervolume",), ("hypervolume",)),
        Section("Ablation", "", ("ablation",), ("ablation",)),
        Section("Accuracy vs time steps", "", ("time_steps",), ("time_steps",)),
        Section(
            "Accuracy vs storage reduction",
            "Every finished run; the paper's point for comparison.",
            ("reduction",),
            (),
        ),
        Section(
            "Binarized layers",
            "Which layers each Pareto-front point binarized.",
            ("layer_map",),
            ("layer_map",),
        ),
        Section("Learning curves", info.learning.what if info.learning else "", ("learning_curves",), ()),
        Section("Estimator history", _estimator_text(info), ("estimator_history",), ()),
        Section(
            "Does the estimator estimate?",
            _check_text(info),
            ("estimator_check",),
            ("estimator_check",),
        ),
        Section("Parameter importances", "", ("importances",), ("importances",)),
        Section("All trials", "", (), ("trials",)),
    ]
    out = []
    for s in sections:
        figs = tuple(f for f in s.figures if f in figures)
        tabs = tuple(t for t in s.tables if t in tables)
        if figs or tabs or s.title == "Summary":  # the summary is the report's first line: always there
            out.append(Section(s.title, s.text, figs, tabs))
    return out


def _summary_text(info: ReportInfo) -> str:
    hv, best, c = info.hypervolume, info.pareto.best, info.counts.total
    return (
        f"{c.total} trial runs: {c.finished} finished, {c.pruned} pruned, {c.failed} failed"
        + (f", {c.running} running" if c.running else "")
        + f"; compute {duration(c.compute_seconds)} (h:mm:ss). "
        f"Best run on validation: {pct(best.val_accuracy)} validation accuracy, "
        f"test accuracy {pct(best.test_accuracy)}, at {num_bytes(best.storage_bytes)} bytes "
        f"({pct(best.storage_reduction, 1)} smaller than full precision), "
        f"run {best.run_id}. Hypervolume {hv.normalized:.4f} on validation "
        f"({hv.test_normalized:.4f} for the same front on test)."
    )


def _pareto_text(info: ReportInfo) -> str:
    pub = info.pareto.published
    paper = (
        f" The paper reports {pct(pub.accuracy)} on {pub.dataset} at T={pub.time_steps} with more than "
        f"{100 * pub.min_storage_reduction:.0f}% storage reduction (dashed line; its storage in bytes is "
        "for its own "
        "network, so only the accuracy is comparable)."
        if pub
        else " The paper reports no result for this dataset."
    )
    return (
        f"The front is {info.selection}. Validation accuracy (final epoch) against storage bytes, "
        "log axis. Grey: dominated runs; blue: the front, labelled with T, estimator, threshold, "
        "BWO mode and the binarized layers; orange x: the test accuracy of each front run." + paper
    )


def _hypervolume_text(info: ReportInfo) -> str:
    hv = info.hypervolume
    return (
        f"Reference point: accuracy = chance ({pct(hv.reference_accuracy)}), storage = the "
        f"full-precision size ({num_bytes(hv.reference_bytes)} bytes; the largest FP32 size among "
        "the runs). Hypervolume = area of the validation accuracy × bytes region the runs dominate "
        "inside that box, divided by the box; 'same front on test' is the area the "
        "validation-selected front spans at its test accuracies. "
        + (
            "Several sweeps: the table compares them against the same reference."
            if len(hv.sweeps) > 1
            else ""
        )
    )


def _estimator_text(info: ReportInfo) -> str:
    if not info.estimator:
        return ""
    return (
        f"Best run on validation, {info.estimator.run_id} ({info.estimator.label}): each layer's "
        "estimated "
        "accuracy loss per epoch; "
        "a ring marks an epoch after which the layer was binary."
    )


def _confirm_text(info: ReportInfo) -> str:
    c = info.confirmation
    if c is None:
        return ""
    survivors = ", ".join(f"c{r.point}" for r in c.survivors) or "none"
    return (
        f"The search's Pareto candidates were trained again on more seeds, with only the seed changed. "
        f"Survivors: {survivors} of {len(c.rows)}. Rule: {c.rule}. In the Pareto figure each candidate "
        "is a diamond (c<n>) at its seed means with ± one standard deviation as error bars (green: "
        "survives; red open: dominated after seed averaging; grey: a seed's run did not finish)."
    )


def _check_text(info: ReportInfo) -> str:
    c = info.estimator_check
    if c is None:
        return ""
    return (
        f"{c.runs} finished run(s) measured, at their final epoch, the true validation accuracy drop of "
        "binarizing each candidate layer alone (the other layers as they are) and logged every "
        "estimator's estimate for the same layer of the same model. Each point is one (run, layer). The "
        "estimators' scales differ, so agreement is judged by rank: Spearman ρ = 1 means the estimator "
        "orders layers exactly as binarizing them hurts; 0, no better than chance."
    )


# ---- Markdown -----------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> str:
    lines = [
        f"**{t.title}**",
        "",
        "| " + " | ".join(map(_md_cell, t.headers)) + " |",
        "|" + "|".join("---" for _ in t.headers) + "|",
    ]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in t.cells]
    if t.caption:
        lines += ["", f"_{t.caption}_ (`{t.name}.csv`)"]
    return "\n".join(lines)


def render_markdown(info: ReportInfo, tables: dict[str, Table], figures: dict[str, Path]) -> str:
    parts = [f"# Report: {info.title}", ""]
    parts += [
        f"- **{k}**: {v}" if k.endswith("reproduce") is False else f"- **{k}**: `{v}`"
        for k, v in header_facts(info)
    ]
    if info.notes:
        parts += ["", "> **Notes**", *[f"> - {n}" for n in info.notes]]
    for s in layout(info, tables, figures):
        parts += ["", f"## {s.title}", ""]
        if s.text:
            parts += [s.text, ""]
        for f in s.figures:
            parts += [f"![{FIGURES[f][0]}](figures/{f}.png)", ""]
        for t in s.tables:
            parts += [_md_table(tables[t]), ""]
    return "\n".join(parts).rstrip() + "\n"


# ---- HTML ---------------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;
background:#fafafa}
main{max-width:1120px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:24px;margin:0 0 12px}
h2{font-size:19px;margin:34px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;font-size:13px;margin:0}
dl.facts dt{color:#666}dl.facts dd{margin:0;word-break:break-word}
code{background:#f1f1f1;padding:1px 4px;border-radius:3px;font-size:12px}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12px;color:#666}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0 4px;width:auto;max-width:100%}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f8}tr:nth-child(even) td{background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
p.caption{font-size:12px;color:#666;margin:2px 0 14px}
.notes{background:#fff7e0;border:1px solid #f0d58a;padding:8px 14px;font-size:13px}
details summary{cursor:pointer;color:#1f4e99}
.scroll{overflow-x:auto}
"""


def _html_table(t: Table) -> str:
    e = html.escape
    numeric = [all(_looks_numeric(row[i]) for row in t.cells) and t.cells for i in range(len(t.headers))]
    head = "".join(f"<th>{e(h)}</th>" for h in t.headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{e(c)}</td>' if numeric[i] else f"<td>{e(c)}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in t.cells
    )
    caption = f'<p class="caption">{e(t.caption)} <code>{e(t.name)}.csv</code></p>' if t.caption else ""
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<h3>{e(t.title)}</h3><div class="scroll">{table}</div>{caption}'


def _looks_numeric(text: str) -> bool:
    stripped = (
        text.replace(",", "").replace("%", "").replace("+", "").replace("–", "").replace("<", "").strip()
    )
    if not stripped:
        return True
    try:
        float(stripped.split(" ")[0])
        return True
    except ValueError:
        return False


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = f"{html.escape(alt)} (<code>figures/{path.stem}.png</code>, <code>.svg</code>)"
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def render_html(info: ReportInfo, tables: dict[str, Table], figures: dict[str, Path]) -> str:
    e = html.escape
    facts = "".join(
        f"<dt>{e(k)}</dt><dd>{f'<code>{e(v)}</code>' if k.endswith('reproduce') else e(v)}</dd>"
        for k, v in header_facts(info)
    )
    body = [f"<h1>Report: {e(info.title)}</h1>", f'<dl class="facts">{facts}</dl>']
    if info.notes:
        body.append(
            '<div class="notes"><b>Notes</b><ul>'
            + "".join(f"<li>{e(n)}</li>" for n in info.notes)
            + "</ul></div>"
        )
    for s in layout(info, tables, figures):
        body.append(f"<h2>{e(s.title)}</h2>")
        if s.text:
            body.append(f"<p>{e(s.text)}</p>")
        body += [_img(figures[f], FIGURES[f][0]) for f in s.figures]
        for t in s.tables:
            block = _html_table(tables[t])
            body.append(
                f"<details><summary>{len(tables[t].cells)} rows</summary>{block}</details>"
                if t == "trials"
                else block
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(info.title)} – ALBSNN report</title>"
        f"<style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
