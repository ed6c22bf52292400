"""Turn per-run numbers into bench/results/<date>[-quick].md (a table) and .png (ratios against their targets)."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.scenarios import Row


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(row: Row) -> float | None:
    """The median of the per-run ratios (each pair was measured back to back), or None without a reference."""
    return statistics.median(row.ratios) if row.ratios else None


def headline(row: Row) -> float:
    """The value an absolute row is judged by: its median, or its largest run for worst-case rows."""
    return max(row.pkgdl) if row.worst_case else statistics.median(row.pkgdl)


def verdict(row: Row) -> str:
    """Whether the row meets its target: the ratio for paired rows, the median for absolute ones."""
    if row.target is None or not row.pkgdl:
        return ""
    value = ratio(row) if row.reference else headline(row)
    if value is None:
        return ""
    ok = value <= row.target if row.lower_is_better else value >= row.target
    return "meets" if ok else "**below**" if not row.lower_is_better else "**above**"


def markdown(rows: list[Row], title: str, context: list[str], failures: list[str]) -> str:
    """The report: context lines, the table, failures, notes and the raw per-run values."""
    lines = [f"# {title}", "", *context, "",
             "| scenario | metric | pkgdl median | min-max | reference median | ratio | target | |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        if not row.pkgdl:
            continue
        spread = f"{_fmt(min(row.pkgdl))}-{_fmt(max(row.pkgdl))}"
        reference = f"{_fmt(statistics.median(row.reference))} ({row.reference_name})" if row.reference else "-"
        value = ratio(row)
        target = "-" if row.target is None else (f"<= {_fmt(row.target)}" if row.lower_is_better
                                                 else f">= {_fmt(row.target)}")
        if row.worst_case:
            target += " (every run)"
        lines.append(f"| {row.scenario} | {row.metric} | {_fmt(statistics.median(row.pkgdl))} | {spread} | "
                     f"{reference} | {'-' if value is None else _fmt(value)} | {target} | {verdict(row)} |")
    if failures:
        lines += ["", "## Left out (no number was taken)", "", *[f"- {failure}" for failure in failures]]
    notes = [f"- {row.scenario} ({row.metric}): {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "## Per-run values", "", "Pairs are (pkgdl, reference), in run order.", ""]
    for row in rows:
        pairs = (", ".join(f"({_fmt(p)}, {_fmt(r)})" for p, r in zip(row.pkgdl, row.reference, strict=True))
                 if row.reference else ", ".join(_fmt(p) for p in row.pkgdl))
        lines.append(f"- {row.scenario} [{row.metric}]: {pairs}")
    return "\n".join(lines) + "\n"


def chart(rows: list[Row], title: str, path: Path) -> None:
    """Left: pkgdl/reference ratios with each target marked; right: worker RSS growth against its bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paired = [row for row in rows if row.ratios]
    absolute = [row for row in rows if row.pkgdl and not row.reference and row.metric == "MiB"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 0.55 * max(len(paired), len(absolute), 4) + 1.8),
                                         gridspec_kw={"width_ratios": [3, 2]})
    for axis, chosen, values, xlabel in (
        (left, paired, [ratio(row) for row in paired], "pkgdl / reference (median of paired runs)"),
        (right, absolute, [headline(row) for row in absolute], "worker RSS growth, MiB (largest run)"),
    ):
        positions = list(range(len(chosen)))
        colours = ["tab:green" if verdict(row) == "meets" else "tab:red" for row in chosen]
        axis.barh(positions, values, color=colours)
        for position, row in zip(positions, chosen, strict=True):
            if row.target is not None:
                axis.plot([row.target] * 2, [position - 0.45, position + 0.45], color="black", linewidth=2)
        axis.set_yticks(positions, [row.scenario for row in chosen], fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel(xlabel)
        axis.grid(axis="x", alpha=0.3)
    left.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    left.set_title("ratios (black line: target)", fontsize=10)
    right.set_title("memory (black line: bound)", fontsize=10)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
