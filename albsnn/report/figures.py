"""Matplotlib figures of a :class:`~albsnn.report.info.ReportInfo`, saved as PNG and SVG.

Each ``plot_*`` takes the info and returns a ``matplotlib.figure.Figure`` (or None when there is
nothing to draw). Figures are built without pyplot, on the Agg canvas, so the caller's backend is
untouched and no display is needed. SVGs are written without a date and with a fixed hash salt,
so the same info gives the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from albsnn.metrics import STORAGE_BYTES, VAL_ACCURACY
from albsnn.pareto import ACCURACY_STORAGE, pareto_mask
from albsnn.report.info import ReportInfo

__all__ = ["FIGURES", "save_figures", "plot_contrasts"]

_FRONT = "#1f77b4"
_TEST = "#ff7f0e"  # the reported test accuracy of a selected run
_GREY = "#b0b0b0"
_PAPER = "#d62728"
_REF = "#7f7f7f"


def _figure(w: float = 8.0, h: float = 5.0, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def _rank_groups(points) -> list[tuple[float, float, str, list]]:
    """Front points at the same (bytes, accuracy) share one mark: ``"#2-4"`` or ``"#2, #5"``."""
    groups: dict[tuple[float, float], list] = {}
    for p in points:
        groups.setdefault((p.storage_bytes, p.val_accuracy), []).append(p)
    out = []
    for (x, y), ps in groups.items():
        ranks = [p.rank for p in ps]
        consecutive = ranks == list(range(ranks[0], ranks[0] + len(ranks)))
        text = (
            f"#{ranks[0]}"
            if len(ranks) == 1
            else (f"#{ranks[0]}-{ranks[-1]}" if consecutive else ", ".join(f"#{r}" for r in ranks))
        )
        out.append((x, y, text, ps))
    return out


_MAX_KEY_LINES = 14


def _test_marks(ax, xs, points) -> None:
    """The test accuracy of each selected point: an x joined to its validation point by a thin line."""
    val = [100 * p.val_accuracy for p in points]
    test = [np.nan if p.test_accuracy is None else 100 * p.test_accuracy for p in points]
    ax.vlines(xs, val, test, color=_TEST, linewidth=0.8, alpha=0.6, zorder=2)
    label = "test accuracy of the front (reported)"
    ax.scatter(xs, test, marker="x", s=36, color=_TEST, label=label, zorder=3)


_SURVIVES, _FALLS = "#2ca02c", "#d62728"


def _confirmed(ax, info: ReportInfo) -> None:
    """Seed-confirmed candidates: validation mean ± std (and storage mean ± std) as error bars.

    Green filled diamonds survive confirmation; red open ones do not; grey ones are incomplete.
    Each is labelled ``c<point>`` (the candidate's number in the confirmation table).
    """
    c = info.confirmation
    if c is None:
        return
    styles = (
        ("survives confirmation", _SURVIVES, "full", lambda r: r.complete and r.survives),
        ("dominated after seed averaging", _FALLS, "none", lambda r: r.complete and not r.survives),
        ("confirmation incomplete", _GREY, "none", lambda r: not r.complete),
    )
    for what, color, fill, wanted in styles:
        rows = [r for r in c.rows if wanted(r) and np.isfinite(r.val_mean)]
        if not rows:
            continue
        ax.errorbar(
            [r.storage_mean for r in rows],
            [100 * r.val_mean for r in rows],
            yerr=[100 * (r.val_std if np.isfinite(r.val_std) else 0.0) for r in rows],
            xerr=[r.storage_std if np.isfinite(r.storage_std) else 0.0 for r in rows],
            fmt="D",
            fillstyle=fill,
            markersize=7,
            color=color,
            capsize=3,
            linewidth=1,
            label=f"seed mean ± std, {what} ({len(rows)})",
            zorder=5,
        )
        for r in rows:
            ax.annotate(
                f"c{r.point}",
                (r.storage_mean, 100 * r.val_mean),
                xytext=(6, -11),
                textcoords="offset points",
                fontsize=8,
                color=color,
                fontweight="bold",
                zorder=6,
            )


def plot_pareto(info: ReportInfo):
    """Validation accuracy vs bytes (log): grey dominated runs, the front and its staircase, the test
    accuracy of each front point as an x, and a key of the front's settings below."""
    from matplotlib.figure import Figure

    p, hv = info.pareto, info.hypervolume
    dom, front = p.dominated, p.front
    groups = _rank_groups(front)
    shown = _front_key(front, groups)
    fig = Figure(figsize=(9, 5.3 + 0.15 * len(shown)), layout="constrained")
    ax, text_ax = fig.subplots(2, 1, height_ratios=[5.2, 0.1 + 0.15 * len(shown)])
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    if dom:
        ax.scatter(
            [d.storage_bytes for d in dom],
            [100 * d.val_accuracy for d in dom],
            s=22,
            color=_GREY,
            label=f"dominated ({len(dom)})",
            zorder=2,
        )
    xs = _draw_front(ax, front, hv.reference_bytes)
    _test_marks(ax, xs, front)
    _confirmed(ax, info)
    _draw_reference(ax, hv)
    low, high = _accuracy_limits(_plotted_accuracies(info))
    _draw_below_axis(ax, dom, low, high)
    _draw_published(ax, p.published, low, high)
    ax.set_xscale("log")
    xmin = min(float(xs.min()), min((d.storage_bytes for d in dom), default=np.inf))
    ax.set_xlim(xmin / 1.5, hv.reference_bytes * 1.5)
    ax.set_ylim(low, high)
    ax.set_xlabel("storage (bytes, log scale)")
    ax.set_ylabel("accuracy (%): validation (dots), test (x)")
    ax.set_title(f"{p.dataset}: validation accuracy vs storage (hypervolume {hv.normalized:.4f})")
    ax.legend(loc="best", fontsize=8, frameon=True, framealpha=0.9, edgecolor="none")
    text_ax.axis("off")
    text_ax.text(
        0,
        1,
        "\n".join(shown),
        va="top",
        ha="left",
        fontsize=7.5,
        family="monospace",
        transform=text_ax.transAxes,
    )
    _rank_labels(fig, ax, [(x, 100 * y, text) for x, y, text, _ in groups])
    return fig


def _front_key(front, groups) -> list[str]:
    """The key below the figure: one line per front mark (or per run where a mark's settings differ)."""
    key = [
        f"{text}: {ps[0].label}"
        + (f" (+{len(ps) - 1} same point)" if len(ps) > 1 and len({q.label for q in ps}) == 1 else "")
        for _, _, text, ps in groups
    ]
    if any(len({q.label for q in ps}) > 1 for *_, ps in groups):  # duplicates with different settings
        key = [f"#{q.rank}: {q.label}" for q in front]
    more = [f"... {len(key) - _MAX_KEY_LINES} more in pareto.csv"] if len(key) > _MAX_KEY_LINES else []
    return key[:_MAX_KEY_LINES] + more


def _draw_front(ax, front, reference_bytes: float) -> np.ndarray:
    """The front's points and, through those no other front point beats on accuracy and storage, the
    staircase (all of them when the objectives are those two; with others, some front points sit below
    it). Returns the points' bytes."""
    xs = np.array([f.storage_bytes for f in front])
    ys = np.array([100 * f.val_accuracy for f in front])
    stairs = pareto_mask({VAL_ACCURACY: ys, STORAGE_BYTES: xs}, ACCURACY_STORAGE)
    sx, sy = xs[stairs], ys[stairs]  # front order: storage ascending
    ax.step(
        np.append(sx, reference_bytes), np.append(sy, sy[-1]), where="post", color=_FRONT, alpha=0.5, zorder=2
    )
    ax.scatter(
        xs,
        ys,
        s=46,
        color=_FRONT,
        edgecolor="white",
        linewidth=0.8,
        label=f"Pareto front, selected on validation ({len(front)})",
        zorder=3,
    )
    return xs


def _draw_reference(ax, hv) -> None:
    """Dotted lines at the hypervolume's reference point (chance, full precision)."""
    ax.axhline(100 * hv.reference_accuracy, color=_REF, linestyle=":", linewidth=1)
    ax.axvline(hv.reference_bytes, color=_REF, linestyle=":", linewidth=1)
    ax.annotate(
        "reference point (chance, full precision)",
        (hv.reference_bytes, 100 * hv.reference_accuracy),
        xytext=(-6, 5),
        textcoords="offset points",
        ha="right",
        fontsize=7,
        color=_REF,
    )


def _draw_below_axis(ax, dominated, low: float, high: float) -> None:
    """Dominated runs the zoomed axis leaves out: a mark on the bottom edge, counted in the key."""
    below = [d for d in dominated if 100 * d.val_accuracy < low]
    if below:
        ax.scatter(
            [d.storage_bytes for d in below],
            [low + 0.015 * (high - low)] * len(below),
            marker="v",
            s=22,
            facecolor="none",
            edgecolor=_GREY,
            label=f"dominated, below the axis ({len(below)})",
            zorder=2,
        )


def _draw_published(ax, pub, low: float, high: float) -> None:
    """The paper's accuracy as a dashed line (said to be off the axis when it is)."""
    if pub is None:
        return
    y = 100 * pub.accuracy
    where = " (above the axis)" if y > high else " (below the axis)" if y < low else ""
    ax.axhline(
        y,
        color=_PAPER,
        linestyle="--",
        linewidth=1.2,
        label=f"paper: {y:.2f}% (T={pub.time_steps}, "
        f">{100 * pub.min_storage_reduction:.0f}% smaller; its own network){where}",
    )


_LABEL_FONT = 8.0  # points
_LABEL_OFFSET = (5.0, 5.0)  # points, up and right of the point


def _plotted_accuracies(info: ReportInfo) -> list[float]:
    """Accuracies (%) the zoomed Pareto axis must show: the front on validation and test, and the
    confirmed candidates' mean ± std. Dominated runs below them, the chance line and the paper's
    line do not stretch the axis."""
    front = info.pareto.front
    out = [100 * f.val_accuracy for f in front]
    out += [100 * f.test_accuracy for f in front if f.test_accuracy is not None]
    if info.confirmation is not None:
        for r in info.confirmation.rows:
            if np.isfinite(r.val_mean):
                std = r.val_std if np.isfinite(r.val_std) else 0.0
                out += [100 * (r.val_mean - std), 100 * (r.val_mean + std)]
    return out


def _accuracy_limits(values: list[float], margin: float = 0.08, min_pad: float = 0.5) -> tuple[float, float]:
    """``(low, high)`` of an accuracy axis in %: the data range padded by ``margin`` of its span
    (at least ``min_pad`` percentage points), kept within [0, 100] plus that pad."""
    lo, hi = (min(values), max(values)) if values else (0.0, 100.0)
    pad = max(margin * (hi - lo), min_pad)
    return max(lo - pad, -pad), min(hi + pad, 100.0 + pad)


def _spread_labels(
    anchors: list[tuple[float, float]],
    sizes: list[tuple[float, float]],
    offset: tuple[float, float] = _LABEL_OFFSET,
    gap: float = 1.0,
) -> list[tuple[float, float]]:
    """Offsets (points) of labels from their anchors (points) such that no two label boxes overlap.

    Greedy, lowest anchor first: a label keeps ``offset`` when its box is free, else moves to the
    free height nearest to it, just above or below a box already placed (the top of the highest
    box is always free). Boxes are ``(width, height)`` in points, their lower-left corner at
    anchor + offset; ``gap`` separates them.
    """
    placed: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1
    out: list[tuple[float, float]] = [offset] * len(anchors)

    def free(x0: float, y0: float, w: float, h: float) -> bool:
        return not any(
            x0 < b[2] + gap and b[0] < x0 + w + gap and y0 < b[3] + gap and b[1] < y0 + h + gap
            for b in placed
        )

    for i in sorted(range(len(anchors)), key=lambda i: (anchors[i][1], anchors[i][0])):
        (ax_, ay), (w, h) = anchors[i], sizes[i]
        x0, want = ax_ + offset[0], ay + offset[1]
        candidates = [want] + [b[3] + gap for b in placed] + [b[1] - gap - h for b in placed]
        y0 = min((c for c in candidates if free(x0, c, w, h)), key=lambda c: (abs(c - want), c))
        placed.append((x0, y0, x0 + w, y0 + h))
        out[i] = (offset[0], y0 - ay)
    return out


def _label_size(text: str, fontsize: float = _LABEL_FONT) -> tuple[float, float]:
    """A bold label's box in points, estimated (0.65 em per character, 1.25 em high): no renderer needed."""
    return 0.65 * fontsize * len(text), 1.25 * fontsize


def _rank_labels(fig, ax, labels: list[tuple[float, float, str]]) -> None:
    """The front's ``#k`` labels, spread so none overlaps another; a label moved off its place gets a
    leader line. Positions are computed in points after the layout is settled."""
    if not labels:
        return
    fig.draw_without_rendering()  # settle the constrained layout so data -> points is final
    to_points = 72.0 / fig.dpi
    anchors = [tuple(to_points * ax.transData.transform((x, y))) for x, y, _ in labels]
    offsets = _spread_labels(anchors, [_label_size(t) for *_, t in labels])
    for (x, y, text), (dx, dy) in zip(labels, offsets, strict=True):
        moved = abs(dy - _LABEL_OFFSET[1]) > 0.5 * _label_size(text)[1]
        ann = ax.annotate(
            text,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=_LABEL_FONT,
            color="#1f3f73",
            fontweight="bold",
            va="bottom",
            zorder=4,
            arrowprops=dict(arrowstyle="-", color="#1f3f73", linewidth=0.5, shrinkA=0, shrinkB=3)
            if moved
            else None,
        )
        ann.set_in_layout(False)  # the labels must not move the layout they were placed in


def plot_hypervolume(info: ReportInfo):
    hv = info.hypervolume
    fig, (ax,) = _figure(8, 4.2)
    for s in hv.sweeps:
        if not s.history:
            continue
        extra = ", ".join(x for x in (s.sampler, s.pruner) if x)
        ax.plot(
            range(1, len(s.history) + 1),
            s.history,
            marker="o",
            markersize=3,
            label=f"{s.sweep}" + (f" ({extra})" if extra else "") + f": {s.normalized:.4f}",
        )
    ax.set_xlabel("finished trials (in completion order)")
    ax.set_ylabel("hypervolume (fraction of box)")
    ax.set_title(
        f"Hypervolume history; reference: chance {100 * hv.reference_accuracy:.1f}%, "
        f"{hv.reference_bytes:,.0f} bytes (full precision)",
        fontsize=10,
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_reduction(info: ReportInfo):
    p = info.pareto
    fig, (ax,) = _figure(8, 4.8)
    if p.dominated:
        ax.scatter(
            [100 * g.storage_reduction for g in p.dominated],
            [100 * g.val_accuracy for g in p.dominated],
            s=20,
            color=_GREY,
            label="dominated",
            zorder=2,
        )
    ax.scatter(
        [100 * g.storage_reduction for g in p.front],
        [100 * g.val_accuracy for g in p.front],
        s=34,
        color=_FRONT,
        label="Pareto front, selected on validation",
        zorder=3,
    )
    _test_marks(ax, [100 * g.storage_reduction for g in p.front], p.front)
    for _, y, text, ps in _rank_groups(p.front):
        ax.annotate(
            text,
            (100 * ps[0].storage_reduction, 100 * y),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            color="#1f3f73",
            fontweight="bold",
        )
    if p.published is not None:
        pub = p.published
        x, y = 100 * pub.min_storage_reduction, 100 * pub.accuracy
        ax.scatter(
            [x],
            [y],
            marker="*",
            s=160,
            color=_PAPER,
            zorder=4,
            label=f"paper (T={pub.time_steps}): {y:.2f}% at >{x:.0f}% reduction",
        )
        ax.annotate("", xy=(x + 12, y), xytext=(x + 1.5, y), arrowprops=dict(arrowstyle="->", color=_PAPER))
    ax.axhline(
        100 * info.hypervolume.reference_accuracy, color=_REF, linestyle=":", linewidth=1, label="chance"
    )
    ax.set_xlim(-2, 102)
    ax.set_xlabel("storage reduction vs full precision (%)")
    ax.set_ylabel("accuracy (%): validation (dots), test (x)")
    ax.set_title("Validation accuracy vs storage reduction (every finished run)")
    ax.legend(fontsize=8, loc="best", frameon=True, framealpha=0.9, edgecolor="none")
    return fig


def plot_time_steps(info: ReportInfo):
    t = info.time_steps
    if t is None:
        return None
    fig, (ax,) = _figure(7, 4.2)
    for k, b in enumerate(t.bands):
        x, m, s = np.array(b.x), 100 * np.array(b.mean), 100 * np.array(b.std)
        (line,) = ax.plot(x, m, marker="o", label=f"{b.label} (mean ± std)")
        ax.fill_between(x, np.clip(m - s, 0, 100), np.clip(m + s, 0, 100), color=line.get_color(), alpha=0.2,
                        linewidth=0)  # fmt: skip
        if b.best is None:
            continue
        ax.plot(
            x,
            100 * np.array(b.best),
            linestyle="none",
            marker="^",
            color=line.get_color(),
            alpha=0.7,
            markersize=5,
        )
        for xi, mi, ni in zip(x, m, b.n, strict=True):
            ax.annotate(
                f"n={ni}",
                (xi, mi),
                xytext=(7, -3 - 9 * k),
                textcoords="offset points",
                fontsize=7,
                color=line.get_color(),
            )
    ax.set_xticks(sorted({x for b in t.bands for x in b.x}))
    ax.set_xlabel("time steps T")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title("Test accuracy vs time steps (▲ the run best on validation)")
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_layer_map(info: ReportInfo):
    m = info.layer_map
    if m is None:
        return None
    from matplotlib.colors import ListedColormap

    code = np.array([[2 if b is None else int(b) for b in row] for row in m.binary], dtype=float)
    fig, (ax,) = _figure(max(4.0, 1.2 + 0.55 * len(m.columns)), 1.0 + 0.38 * len(m.layers))
    ax.grid(False)
    ax.imshow(code, cmap=ListedColormap(["#e8eef7", "#1f4e99", "#cccccc"]), vmin=0, vmax=2, aspect="auto")
    for i, row in enumerate(m.binary):
        for j, b in enumerate(row):
            ax.text(
                j,
                i,
                {True: "B", False: "FP", None: "?"}[b],
                ha="center",
                va="center",
                fontsize=8,
                color="white" if b else "#333333",
            )
    ax.set_xticks(range(len(m.columns)), m.columns)
    ax.set_yticks(range(len(m.layers)), m.layers)
    ax.set_xlabel("Pareto-front point (#1 = smallest model)")
    ax.set_title("Binarized layers (B) per front point", fontsize=10)
    return fig


def plot_learning(info: ReportInfo):
    lc = info.learning
    if lc is None:
        return None
    fig, (ax1, ax2) = _figure(11, 4.2, ncols=2)
    for c in lc.curves:
        colors = {}
        for ax, b, scale in ((ax1, c.test_accuracy, 100), (ax2, c.train_loss, 1)):
            if not b.x:
                continue
            x, m, s = np.array(b.x), scale * np.array(b.mean), scale * np.array(b.std)
            (line,) = ax.plot(x, m, marker="o", markersize=3, label=c.label if ax is ax1 else None)
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.18, linewidth=0)
            colors[ax] = line.get_color()
        if c.val_accuracy is not None:
            v = c.val_accuracy
            ax1.plot(v.x, 100 * np.array(v.mean), linestyle="--", linewidth=1, color=colors.get(ax1))
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax1.set_ylabel("accuracy (%)")
    ax2.set_ylabel("train loss")
    ax1.set_title("Learning curves: test accuracy (solid), validation (dashed)", fontsize=10)
    ax2.set_title("train loss", fontsize=10)
    fig.legend(loc="outside lower center", fontsize=7, frameon=False, ncols=2)
    return fig


def plot_estimator(info: ReportInfo):
    e = info.estimator
    if e is None:
        return None
    fig, (ax,) = _figure(8, 4.2)
    for layer, epochs, est, binary in zip(e.layers, e.epochs, e.estimates, e.binary, strict=True):
        (line,) = ax.plot(epochs, est, marker="o", markersize=4, label=layer)
        b = [i for i, flag in enumerate(binary) if flag]
        ax.scatter(
            [epochs[i] for i in b],
            [est[i] for i in b],
            s=60,
            facecolor="none",
            edgecolor=line.get_color(),
            linewidth=1.4,
        )
    if e.threshold is not None:
        ax.axhline(
            e.threshold, color=_PAPER, linestyle="--", linewidth=1, label=f"threshold {e.threshold:.3g}"
        )
    if e.bwo_epoch is not None:
        ax.axvline(e.bwo_epoch, color=_REF, linestyle=":", linewidth=1.2, label=f"BWO at epoch {e.bwo_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("estimated accuracy loss (percent scale)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(
        f"Estimator history of the best run on validation ({e.run_id[:8]}); ringed: binary", fontsize=10
    )
    ax.legend(fontsize=7, frameon=False, ncols=2)
    return fig


def plot_importances(info: ReportInfo):
    if not info.importances:
        return None
    n = len(info.importances)
    fig, axes = _figure(6.5 * n, 0.9 + 0.45 * max(len(i.params) for i in info.importances), ncols=n)
    for ax, imp in zip(axes, info.importances, strict=True):
        y = np.arange(len(imp.params))
        height = 0.8 / len(imp.objectives)
        for k, (obj, values) in enumerate(zip(imp.objectives, imp.values, strict=True)):
            ax.barh(y + k * height, values, height=height, label=obj)
        ax.set_yticks(y + height * (len(imp.objectives) - 1) / 2, imp.params)
        ax.invert_yaxis()
        ax.set_xlabel("importance (fANOVA, sums to 1)")
        ax.set_title(f"{imp.sweep}: {imp.n_trials} completed trials", fontsize=10)
        ax.legend(fontsize=8, frameon=False)
    return fig


def plot_ablation(info: ReportInfo):
    """Each non-baseline row's paired difference from the baseline: the mean of (row − baseline) over
    the common seeds with its t confidence interval as error bars, the seeds' own differences as
    dots, ± the detectable difference at the report's power as dashes, and a line at 0."""
    a = info.ablation
    if a is None:
        return None
    base = a.baseline
    rows = [r for r in a.rows if not r.baseline and r.paired_delta is not None]
    if not rows:
        return None
    fig, (ax,) = _figure(max(5.0, 1.6 + 1.1 * len(rows)), 4.6)
    ax.axhline(0, color="#444444", linewidth=1, alpha=0.8)
    for x, r in enumerate(rows):
        color = _FRONT
        d = 100 * r.paired_delta
        err = None if r.ci_low is None else [[d - 100 * r.ci_low], [100 * r.ci_high - d]]
        ax.errorbar(
            [x],
            [d],
            yerr=err,
            fmt="o",
            color=color,
            capsize=5,
            markersize=7,
            markerfacecolor="white" if r.flagged else color,
            markeredgewidth=1.5,
            zorder=3,
        )
        diffs = [100 * (v - base.values[s]) for s, v in r.values.items() if s in base.values]
        ax.scatter([x + 0.18] * len(diffs), diffs, s=12, color=color, alpha=0.5, zorder=2)
        if r.mde is not None:
            ax.scatter([x, x], [100 * r.mde, -100 * r.mde], marker="_", s=160, color=_REF, zorder=2)
    labels = [f"{r.label}{' †' if r.flagged else ''}\nn={r.n_pairs} pairs" for r in rows]
    ax.set_xticks(range(len(rows)), labels, fontsize=8, rotation=20, ha="right")
    ax.set_xlim(-0.6, len(rows) - 0.4)
    conf, power = f"{100 * a.confidence:g}%", f"{100 * a.power:g}%"
    ax.set_ylabel(f"test accuracy − baseline (pp): mean, {conf} CI; dots = seeds")
    ax.set_title(
        f"Paired difference from the baseline ({base.label}); grey dashes: ± difference detectable "
        f"at {power} power (open marker †: missing or failed seeds)",
        fontsize=9,
        wrap=True,
    )
    return fig


def plot_contrasts(info, unit: str = "pp"):
    """A study's paired contrasts (:class:`~albsnn.report.ablation.ContrastInfo`): each mean difference
    with its CI, ± the equivalence margin shaded, ± the detectable difference as grey dashes."""
    rows = [c for c in info.contrasts if c.mean is not None]
    if not rows:
        return None
    fig, (ax,) = _figure(7.5, 1.2 + 0.6 * len(rows))
    ax.axvspan(-info.margin, info.margin, color=_GREY, alpha=0.25, linewidth=0)
    ax.axvline(0, color="#444444", linewidth=1)
    for y, c in enumerate(rows):
        err = None if c.ci_low is None else [[c.mean - c.ci_low], [c.ci_high - c.mean]]
        ax.errorbar([c.mean], [y], xerr=err, fmt="o", color=_FRONT, capsize=5, zorder=3)
        if c.mde is not None:
            ax.scatter([c.mde, -c.mde], [y, y], marker="|", s=160, color=_REF, zorder=2)
    ax.set_yticks(
        range(len(rows)), [f"{c.cell} − {c.control}\n{c.verdict}, n={c.n}" for c in rows], fontsize=8
    )
    ax.invert_yaxis()
    ax.set_xlabel(f"paired difference ({unit}): mean and {100 * info.confidence:g}% CI")
    ax.set_title(
        f"shaded: ±{info.margin:g} {unit} (equivalence margin); grey ticks: ± difference detectable at "
        f"{100 * info.power:g}% power",
        fontsize=9,
    )
    return fig


def plot_estimator_check(info: ReportInfo):
    """One panel per estimator: its estimate (x) against the measured accuracy drop (y) of each layer."""
    c = info.estimator_check
    if c is None:
        return None
    n = len(c.estimators)
    fig, axes = _figure(min(4.2 * n, 13.0), 3.8, ncols=n)
    for ax, e in zip(axes, c.estimators, strict=True):
        runs = list(dict.fromkeys(q.run_id for q in e.pairs))
        for run_id in runs:
            ps = [q for q in e.pairs if q.run_id == run_id]
            ax.scatter([q.estimated for q in ps], [q.measured for q in ps], s=22, alpha=0.8)
        ax.axhline(0, color=_REF, linestyle=":", linewidth=1)
        rho = "–" if e.rho is None else f"{e.rho:.2f}"
        ax.set_title(f"{e.estimator}: Spearman ρ = {rho} (n={e.n}, {len(runs)} runs)", fontsize=9)
        ax.set_xlabel(f"estimate ({e.scale})")
    axes[0].set_ylabel("measured accuracy drop (pp)")
    return fig


FIGURES: dict[str, tuple[str, Callable]] = {
    "pareto": ("Pareto front: validation accuracy vs storage (test accuracy marked)", plot_pareto),
    "hypervolume": ("Hypervolume history", plot_hypervolume),
    "reduction": ("Accuracy vs storage reduction", plot_reduction),
    "time_steps": ("Accuracy vs time steps", plot_time_steps),
    "layer_map": ("Binarized layers of the front points", plot_layer_map),
    "learning_curves": ("Learning curves", plot_learning),
    "estimator_history": ("Estimator history of the best run", plot_estimator),
    "estimator_check": ("Estimated vs measured accuracy drop per layer", plot_estimator_check),
    "importances": ("Parameter importances", plot_importances),
    "ablation": ("Ablation", plot_ablation),
}


def save_figures(info: ReportInfo, folder: Path) -> dict[str, Path]:
    """Draw every figure that has data; write ``<name>.png`` and ``<name>.svg``. Returns name -> PNG path."""
    import matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    with matplotlib.rc_context({"svg.hashsalt": "albsnn-report", "font.size": 9}):
        for name, (_, plot) in FIGURES.items():
            fig = plot(info)
            if fig is None:
                continue
            fig.savefig(folder / f"{name}.png", dpi=130, metadata={"Software": None})
            fig.savefig(folder / f"{name}.svg", metadata={"Date": None})
            out[name] = folder / f"{name}.png"
    return out
