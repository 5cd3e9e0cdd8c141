"""One module per scenario, each with `run(bench)` and `rows(figures)` (its lines of the
table); MODULES in the order they run by default (delete needs rate before it)."""

from . import create, delete, drift, fleet, idle, neighbours, noise, rate, restart, rotate


MODULES = {
    "create": create,
    "rotate": rotate,
    "restart": restart,
    "idle": idle,
    "noise": noise,
    "rate": rate,
    "delete": delete,
    "drift": drift,
    "neighbours": neighbours,
    "fleet": fleet,
}
