"""The benchmark suite of blast-grpc: ``python -m blast_grpc.bench`` (``make bench``).

Seven workloads against real processes — the engine (coordinator, workers, Chromium), the
simulated model over HTTP with stated latency models, and generated pages on a local
site — each reported as figures against the ideal for the same run:

1. ``fanout``: task-parallel fan-out, efficiency versus K, parallel versus sequential;
2. ``extraction``: one mini-model call over a long page versus chunks in parallel;
3. ``first_of_n``: racing copies with lognormal latency, against the minimum of N draws;
4. ``overhead``: engine time per step beyond the model and the browser, gRPC and REST;
5. ``concurrency``: throughput, latency and memory as concurrent tasks double;
6. ``start_cache``: submit → first browser action (warm and cold), result and plan caches;
7. ``miniwob``: MiniWoB++ success per task type, observe time, LLM request size and prefix share.

Modules: ``cli`` (flags, the run, output files), ``context`` (what a workload gets:
seed, site, sim and engine factories), ``servers`` (sim process, timed static site),
``sitegen`` (the pages), ``trace`` (event traces), ``stats``, ``results`` (rows, JSON,
Markdown), ``plots``, ``workloads/`` (one module each) and ``scenarios/bench.yaml``.
"""
