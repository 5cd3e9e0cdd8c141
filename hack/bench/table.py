"""The Markdown table of a run's results: each scenario's own rows, then its goals."""

from .report import VERDICT
from .scenarios import MODULES


def table(results):
    rows = []
    for r in results:
        s, f = r["scenario"], r["figures"]
        first = ", ".join(f"{k}={v}" for k, v in r["parameters"].items())
        lines = MODULES[s].rows(f)
        for key, g in f.get("goals_met", {}).items():
            verdict = VERDICT[g["met"]]
            lines.append((f"goal: {r['goals'][key]}", f"{verdict}: {g['measured']}"))
        for figure, value in lines:
            rows.append((s, first, figure, value))
            first = ""
    out = ["| scenario | parameters | figure | value |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)
