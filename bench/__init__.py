"""Benchmarks: ``make bench`` (``python -m bench.run``) runs every module here.

How modules are found: ``bench/run.py`` imports every module of this package
whose name does not start with ``_`` (except ``run`` and ``report`` themselves)
and calls its ``main(argv: list[str]) -> int | None``, in name order. To add a
benchmark, drop ``bench/<name>.py`` with such a ``main``; nothing else to edit.
``python -m bench.run startup`` runs only the named modules; arguments after
``--`` are passed to each ``main``.

Each benchmark prints a markdown table and rewrites its own section of
``docs/benchmarks.md`` with ``bench.report.update_section(name, markdown)``,
between ``<!-- bench:<name> -->`` and ``<!-- /bench:<name> -->``.

Benchmarks talk to loopback only; GOLEM_REQUESTOR_DISCOVERY_URL is set to a
loopback address in every environment they start.
"""
