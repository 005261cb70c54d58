"""The reports wing: from a sweep's tidy results frame to what a person reads (tables, Markdown, HTML, files).

It starts where the store ends: :mod:`farm.rows` and :mod:`farm.rowstore` (the compact rows kept in Redis) stay
with the store; everything here reads the frame built from them. Which module holds what:

* :mod:`~farm.reports.stats` — statistics over repeats (median and bootstrap CI, ratio CIs, Mann-Whitney U);
  numpy only (scipy inside the rank test), nothing of benchfarm.
* :mod:`~farm.reports.frames` — what every reader asks of a results frame: succeeded, failed, invalid (contended) rows,
  the hardware that ran them, measurements as floats, the sort order.
* :mod:`~farm.reports.aggregate` — one sweep: the results frame itself, one row per cell with statistics over
  its repeats (``farm report``) and speedups; :mod:`~farm.reports.ratios` its ``--ratio-by`` ratios.
* :mod:`~farm.reports.tables` — rendering a frame as CSV/JSON/Markdown/Parquet.
* :mod:`~farm.reports.compare` — two sweeps cell by cell (``farm compare``).
* :mod:`~farm.reports.history` — the same cells over many sweeps and where each changed (``farm history``).
* :mod:`~farm.reports.markdown` — ``report.md``, the short summary a person reads.
* :mod:`~farm.reports.html_page` — what every HTML page shares (document, escaping, tables, figures);
  :mod:`~farm.reports.html_sweep` (one sweep's ``report.html``, with its sections :mod:`~farm.reports.html_summary`,
  :mod:`~farm.reports.html_speedup` and :mod:`~farm.reports.html_environment`), :mod:`~farm.reports.html_history` and
  :mod:`~farm.reports.html_compare` are the pages; :mod:`~farm.reports.plots` draws their charts (matplotlib,
  the ``plot`` extra, imported only through :func:`~farm.reports.html_page.load_plots`).
* :mod:`~farm.reports.files` — writing any of them to disk whole or not at all.

Names, and why they changed when the wing left the flat ``farm/`` floor: ``report.py`` became ``aggregate``
(it holds the sweep's aggregation; "report" named the whole wing), ``summary_md.py`` became ``markdown`` (the
format is what tells it from the HTML pages; the summary is the only Markdown written), ``html_report.py``
became ``html_sweep`` (one page per subject: sweep, history, compare), ``output.py`` became ``files`` (it writes
report files; "output" also meant terminal output). ``stats``, ``frames``, ``compare``, ``history``, ``plots``
and ``html_page`` already said what they hold and kept their names.

Direction of imports, one way only: ``stats`` and ``plots`` import nothing of benchfarm; ``frames`` imports
:mod:`farm.rows`; ``aggregate``, ``compare`` and ``history`` import ``frames`` and ``stats``, and ``ratios`` also
``aggregate`` (the cells, the column check, the sort order); the pages import ``html_page`` (``html_sweep`` also its
sections ``html_summary``, ``html_speedup`` and ``html_environment``, and ``html_history``, ``frames`` and
``stats``; ``html_summary`` imports ``html_speedup``); ``html_page`` and ``markdown`` import ``files``, which
imports ``tables`` only inside the function that renders a frame (pandas stays out of ``farm.reports.files``, which
every command imports). Outside the wing only :mod:`farm.rows` and :mod:`farm.safe_text` are imported; nothing here
imports :mod:`cli` or :mod:`workers`, and no other ``farm`` module imports the wing: ``cli`` (``report``,
``results``, ``compare``, ``history``, ``run``) does. This file imports nothing, so importing one module of the wing
loads only what that module needs.
"""
