"""The terminal table of `vitmae robustness`: a row per corruption (severities 1-5 and their
mean), the mean row, then a row per attack and radius."""

from __future__ import annotations


def _pct(value: float) -> str:
    return f"{100 * value:6.2f}"


def robustness_table(records: list[dict], summary: dict) -> str:
    key = summary["metric"]
    cor = [r for r in records if r["kind"] == "corruption"]
    sevs = sorted({r["severity"] for r in cor})
    lines = [f"{key} (%) on {summary['n']} test items; clean {_pct(summary['clean'])}"]
    if cor:
        lines.append(f"{'corruption':<18}" + "".join(f"{'s' + str(s):>8}" for s in sevs)
                     + f"{'mean':>8}")
        for name, mean in summary["by_corruption"].items():
            cells = {r["severity"]: r[key] for r in cor if r["corruption"] == name}
            lines.append(f"{name:<18}" + "".join(f"{_pct(cells[s]):>8}" for s in sevs)
                         + f"{_pct(mean):>8}")
        lines.append(f"{'mean':<18}" + "".join(f"{_pct(summary['by_severity'][s]):>8}"
                                               for s in sevs)
                     + f"{_pct(summary['corruption_mean']):>8}")
    for r in records:
        if r["kind"] == "attack":
            grid = f" at {r['size']} px" if r.get("size") else ""
            lines.append(f"{r['attack']:<10} eps {r['eps'] * 255:g}/255{grid}: {_pct(r[key])}")
    return "\n".join(lines)
