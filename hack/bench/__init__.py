"""The benchmark of docs/performance.md, run by hack/bench.sh as `python -m bench`.

Runs the scenarios against a private test environment and a build of the operator, reads the
operator's own /metrics, the kube-apiserver's /metrics and /proc/PID of the operator, writes
target/bench/results.json and prints a Markdown table. Standard library only, plus boto3
(present in the moto virtualenv of hack/testenv.sh). Settings come from BENCH_* variables
(settings.py), the environment from the test environment's env.json.

One module per concern: settings, kube (client), metrics (parsing and counters), operator (the
process measured), fixtures (objects created), harness (the run's shared state), goals, report,
and scenarios/ with one file per scenario.
"""
