"""The same cells across many sweeps, in time order, with the sweep where each one changed beyond its noise.

Labs run one sweep again and again (nightly, after a driver or framework upgrade, each time under a new
``--name``). :func:`history_frame` lines up the matching cells of every such sweep and :func:`detect_steps`
flags the sweep at which a cell's throughput changed, naming what changed in the fingerprint there
(:func:`fingerprint_change`, e.g. ``"keras 3.15.1 → 3.16.0"``).

"The same cell" means what it means to ``farm compare`` (:mod:`farm.reports.compare`): equal ``CELL_COLUMNS`` and equal
hardware (:func:`farm.reports.frames.hardware_keys`: the ``hardware_key``, or the device name for results recorded
before that key existed, decided jointly over all sweeps). The sweep's name is not part of it (it is what
differs), and neither is the software (an upgrade is exactly what a history should show). Only succeeded
repeats count, and invalid repeats (:func:`farm.reports.frames.invalid_mask`: contended, throttled, too short to
time) are left out as ``farm report`` and ``farm compare`` leave them out: they measure how busy the machine was,
not the code.

**The detection rule** (per cell and hardware key, over its sweeps in time order; a sweep whose repeats were
all left out is shown but neither tested nor used as a baseline). The sweeps since the last flagged change
form the cell's current *segment* (at first: every sweep so far). Sweep ``i`` is then tested twice:

1. *Step*: its repeats against the pooled repeats of the last ``window`` sweeps of the segment (fewer when the
   segment is shorter). The change is ``median(sweep i) / median(window) - 1``; the sweep is flagged when
   ``|change| > threshold`` **and** the two-sided Mann-Whitney U test (:func:`farm.reports.stats.mann_whitney`, the
   test ``farm compare`` uses: timings are skewed and carry outliers, so a rank test, not a t-test) gives
   ``p < alpha``. The threshold keeps a real but tiny shift (that many tight repeats resolve) from counting;
   the test keeps a large but noisy difference from counting. This is Bencher's "threshold over a rolling
   window of history" with a rank test for its boundary, and asv's "a step, not a point" in that the baseline
   restarts at every flagged change: the sweeps after a step are compared with the new level, so a lasting
   regression is flagged once, where it happened, not again at every later sweep.
2. *Drift*: a slow drift (say 1 % a sweep) never moves one sweep far from the last few, so step tests alone
   would let it accumulate unseen. When the segment holds more than ``window`` sweeps, sweep ``i`` is also
   tested, by the same rule, against the segment's *first* ``window`` sweeps (its anchor). The first sweep at
   which the accumulated change passes the threshold significantly is flagged, with ``changed`` saying it is
   a gradual drift and since which sweep; the segment then restarts there.

``change_pct`` is the change in percent against the baseline used (the window, or the anchor for a drift);
for a throughput a negative change is a slowdown (:func:`regressions`). With one repeat per sweep the rank test
cannot reach ``p < 0.05`` against fewer than 39 earlier values, so such a history flags little: run repeats.

Pure pandas/numpy (scipy inside the rank test); no training framework.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS
from farm.reports.frames import floats, hardware_keys, invalid_mask, sort_key, succeeded
from farm.reports.stats import group_medians, mann_whitney, summarize_groups

#: The throughput a history follows (higher is faster).
METRIC = "steady_samples_per_s"
#: Default smallest relative change of the median that counts (5 %).
DEFAULT_THRESHOLD = 0.05
#: Default significance level of the rank test.
DEFAULT_ALPHA = 0.05
#: Default number of earlier sweeps a sweep is compared with (and the size of a segment's anchor).
DEFAULT_WINDOW = 5
#: The unit of a throughput when the results do not name one (``unit`` column): samples per second.
DEFAULT_UNIT = "samples"
#: What ``changed`` says at a flagged change where no fingerprint column differs.
NO_SOFTWARE_CHANGE = "no software change recorded"

#: Output columns of :func:`history_frame`, in order.
HISTORY_COLUMNS = [
    *CELL_COLUMNS,
    "hardware_key",
    "sweep_id",
    "when",
    "n",
    "median",
    "ci_low",
    "ci_high",
    "unit",
    "change",
    "change_pct",
    "p_value",
    "changed",
]

#: The fingerprint columns compared between the sweep before a change and the sweep at it, with their labels
#: (``backend_version`` is labelled by the cell's backend). ``software_key`` sums up the versions and more (the
#: other installed backends): it is described only when no version column explains the difference.
FINGERPRINT = [
    ("keras_version", "keras"),
    ("backend_version", None),
    ("python_version", "python"),
    ("benchfarm_version", "benchfarm"),
    ("workload_version", "workload"),
    ("software_key", "software"),
    ("device_name", "device"),
]


# ------------------------------------------------------------------------------------------------ detection
@dataclass(frozen=True)
class Verdict:
    """What the detector says of one sweep of a cell.

    ``change``: flagged; ``kind``: ``"step"`` or ``"drift"`` when flagged, else None; ``change_pct``: percent
    change of the median against ``baseline`` (NaN when there is none: the first sweep, or no values);
    ``p_value``: the rank test's (NaN when untested: the first sweep, or a change within the threshold, which
    no p-value could flag); ``baseline``: the indices of the sweeps it was compared
    with (for a drift: the anchor), so a caller can say what changed since then."""

    change: bool
    kind: str | None
    change_pct: float
    p_value: float
    baseline: tuple[int, ...]


_NONE = Verdict(False, None, math.nan, math.nan, ())


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else math.nan


def _test(base: list[np.ndarray], current: np.ndarray, threshold: float, alpha: float) -> tuple[bool, float, float]:
    """(beyond threshold and significant, relative change, p) of ``current`` against the pooled ``base``.

    The rank test runs only when the change passes the threshold (p is NaN otherwise): below it no p-value
    could flag the sweep, and scipy's test costs about a millisecond, which over a year of nightly sweeps of
    hundreds of cells is most of the time a history takes."""
    pooled = np.concatenate(base)
    ref = _median(pooled)
    rel = _median(current) / ref - 1 if ref and not math.isnan(ref) else math.nan
    if not abs(rel) > threshold:
        return (False, rel, math.nan)
    p = mann_whitney(pooled, current)
    return (bool(p < alpha), rel, p)


def detect_steps(
    samples: Sequence[Iterable[float]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    window: int = DEFAULT_WINDOW,
) -> list[Verdict]:
    """One :class:`Verdict` per sweep of one cell, ``samples[i]`` being sweep ``i``'s repeats in time order.

    The rule (step against the last ``window`` sweeps since the last change, drift against the first
    ``window`` of them, both needing ``|change| > threshold`` and Mann-Whitney ``p < alpha``) is the module
    docstring's. NaNs are dropped; a sweep left with no value gets an empty verdict and is skipped."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, not {threshold!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), not {alpha!r}")
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window!r}")
    values = [np.asarray(list(s), dtype=float) for s in samples]
    values = [v[~np.isnan(v)] for v in values]
    out: list[Verdict] = []
    segment: list[int] = []  # the tested sweeps since the last change (with values), in time order
    for i, current in enumerate(values):
        if current.size == 0:
            out.append(_NONE)
            continue
        if not segment:
            out.append(_NONE)
            segment.append(i)
            continue
        recent = segment[-window:]
        flagged, rel, p = _test([values[j] for j in recent], current, threshold, alpha)
        verdict = Verdict(flagged, "step" if flagged else None, 100 * rel, p, tuple(recent))
        if not flagged and len(segment) > window:
            anchor = segment[:window]
            drifted, d_rel, d_p = _test([values[j] for j in anchor], current, threshold, alpha)
            if drifted:
                verdict = Verdict(True, "drift", 100 * d_rel, d_p, tuple(anchor))
        out.append(verdict)
        if verdict.change:
            segment = [i]
        else:
            segment.append(i)
    return out


# ---------------------------------------------------------------------------------------------- fingerprint
def _values(v: Any) -> list[str]:
    """A fingerprint cell's values: a set of versions a sweep's repeats ran with, as text."""
    if v is None:
        return []
    if isinstance(v, (set, frozenset, list, tuple)):
        return sorted({str(x) for x in v if not _blank(x)})
    return [] if _blank(v) else [str(v)]


def _blank(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) or v == ""


def fingerprint_change(before: dict[str, Any], after: dict[str, Any], backend: str | None = None) -> str:
    """What differs between two fingerprints (column → a value or a set of values, e.g. ``keras_version``),
    as text: ``"keras 3.15.1 → 3.16.0; tensorflow 2.20.0 → 2.21.0"``; empty when nothing differs.

    A sweep whose repeats pooled several values shows them joined with ``|``; a value known on one side only
    shows ``?`` on the other. ``software_key`` is spelled out only when no version column differs (it is made
    of them), as the tokens it lost and gained (``"tensorflow2.20.0 → tensorflow2.21.0"``)."""
    parts: list[str] = []
    for column, label in FINGERPRINT:
        old, new = _values(before.get(column)), _values(after.get(column))
        if old == new or (column == "software_key" and parts):
            continue
        if column == "software_key":
            old_tokens = {t for v in old for t in v.split()}
            new_tokens = {t for v in new for t in v.split()}
            lost = " ".join(sorted(old_tokens - new_tokens)) or "?"
            gained = " ".join(sorted(new_tokens - old_tokens)) or "?"
            parts.append(f"software {lost} → {gained}")
            continue
        name = label or (f"{backend}" if backend else "backend")
        parts.append(f"{name} {'|'.join(old) or '?'} → {'|'.join(new) or '?'}")
    return "; ".join(parts)


# -------------------------------------------------------------------------------------------------- history
def history_frame(
    frames: Sequence[tuple[str, pd.DataFrame]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    window: int = DEFAULT_WINDOW,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per cell × hardware × sweep that ran it (``HISTORY_COLUMNS``), cells in report order and each
    cell's sweeps in time order, with the detector's verdicts.

    ``frames``: ``(sweep_id, tidy results frame)`` pairs (see :func:`farm.reports.aggregate.results_frame`), in the
    order the store lists the sweeps (it breaks ties of time). Per row:

    * ``when`` — the median ``finished_at`` of the sweep's succeeded jobs in the cell (ISO 8601, UTC); sweeps
      are ordered by it (a re-run sweep lands where it ran, not where it was first submitted).
    * ``n``, ``median``, ``ci_low``, ``ci_high`` — the valid succeeded repeats of ``steady_samples_per_s``
      and the bootstrap CI of their median (:func:`farm.reports.stats.summarize_groups`); ``unit`` — what is counted
      per second (a ``unit`` column of the results, else ``"samples"``).
    * ``change``, ``change_pct``, ``p_value`` — :func:`detect_steps`.
    * ``changed`` — :func:`fingerprint_change` from the previous sweep of the cell to this one (for a drift:
      from the segment's first sweep); at a flagged change it is never empty: a drift says so first, and
      ``"no software change recorded"`` stands in when no fingerprint column differs.
    """
    _check_columns(frames)
    oks = [succeeded(df) for _, df in frames]
    if not oks or all(ok.empty for ok in oks):
        return _empty()
    rows = _pooled_rows(frames, oks)
    rows["_cell"] = rows.groupby([*CELL_COLUMNS, "hardware_key"], dropna=False, sort=False).ngroup().to_numpy()
    # One group per cell and sweep: the rows of the output.
    group = rows.groupby(["_cell", "_order"], sort=True).ngroup().to_numpy()
    groups = int(group.max()) + 1
    out = _sweep_table(rows, group, groups, confidence=confidence, n_boot=n_boot, seed=seed)
    _add_detections(out, rows, group, groups, threshold=threshold, alpha=alpha, window=window)
    return _ordered(out)[HISTORY_COLUMNS]


def _check_columns(frames: Sequence[tuple[str, pd.DataFrame]]) -> None:
    """Refuse results that lack a column the history is built from, naming the sweep, before any work."""
    for sweep_id, df in frames:
        missing = [c for c in [*CELL_COLUMNS, "status", METRIC] if c not in df.columns]
        if missing:
            raise ValueError(f"results of sweep {sweep_id} lack columns: {', '.join(missing)}")


def _pooled_rows(frames: Sequence[tuple[str, pd.DataFrame]], oks: list[pd.DataFrame]) -> pd.DataFrame:
    """Every sweep's succeeded repeats in one frame, with the hardware key decided jointly over all sweeps (so
    one cell is one cell throughout)."""
    hardware = hardware_keys(*oks)
    parts = [
        _sweep_rows(sweep_id, k, ok, hw)
        for k, ((sweep_id, _), ok, hw) in enumerate(zip(frames, oks, hardware, strict=True))
    ]
    return pd.concat(parts, ignore_index=True)


def _sweep_rows(sweep_id: str, order: int, ok: pd.DataFrame, hardware: pd.Series) -> pd.DataFrame:
    """One sweep's succeeded repeats: the cell, its hardware and sweep, and what the figures need, in private
    ``_`` columns: the store's order of the sweep, the value (NaN when invalid: left out, like ``farm
    report`` leaves it out), when the job finished, the unit; and the fingerprint columns."""
    part = ok[CELL_COLUMNS].astype(object).reset_index(drop=True)
    part["hardware_key"] = hardware
    part["sweep_id"] = sweep_id
    part["_order"] = order
    part["_value"] = np.where(invalid_mask(ok), np.nan, floats(ok[METRIC]))
    part["_finished"] = _timestamps(ok)
    part["_unit"] = _units(ok)
    for column, _ in FINGERPRINT:
        part[column] = ok[column].astype(object).to_numpy() if column in ok.columns else None
    return part


def _sweep_table(
    rows: pd.DataFrame, group: np.ndarray, groups: int, *, confidence: float, n_boot: int, seed: int
) -> pd.DataFrame:
    """One row per cell and sweep with when it ran and the summary of its repeats (the private ``_when_ns``,
    ``_order`` and ``_cell`` columns are for ordering and detection)."""
    stats = summarize_groups(rows["_value"].to_numpy(), group, groups, confidence=confidence, n_boot=n_boot, seed=seed)
    when_ns = group_medians(rows["_finished"].to_numpy(dtype=float), group, groups)
    first = np.unique(group, return_index=True)[1]
    out = rows.loc[first, [*CELL_COLUMNS, "hardware_key", "sweep_id", "_order", "_cell"]].reset_index(drop=True)
    out["_when_ns"] = when_ns
    out["when"] = [_iso(t) for t in when_ns]
    out["n"] = stats.n
    out["median"], out["ci_low"], out["ci_high"] = stats.median, stats.ci_low, stats.ci_high
    out["unit"] = _first_per_group(rows["_unit"], group, groups, DEFAULT_UNIT)
    return out


def _add_detections(
    out: pd.DataFrame,
    rows: pd.DataFrame,
    group: np.ndarray,
    groups: int,
    *,
    threshold: float,
    alpha: float,
    window: int,
) -> None:
    """Runs the detector over each cell's sweeps in time order and adds ``change``, ``change_pct``,
    ``p_value`` and ``changed`` to ``out`` (whose rows are the groups)."""
    by_group = _split(rows["_value"].to_numpy(), group, groups)
    fingerprints = _fingerprints(rows, group, groups)
    sweep_ids = out["sweep_id"].astype(str).tolist()
    backends = out["backend"].tolist()
    change = np.zeros(groups, dtype=bool)
    change_pct = np.full(groups, np.nan)
    p_value = np.full(groups, np.nan)
    changed = [""] * groups
    for order in _cells_in_time_order(out):
        verdicts = detect_steps([by_group[g] for g in order], threshold=threshold, alpha=alpha, window=window)
        backend = None if _blank(backends[order[0]]) else str(backends[order[0]])
        for pos, (g, verdict) in enumerate(zip(order, verdicts, strict=True)):
            change[g], change_pct[g], p_value[g] = verdict.change, verdict.change_pct, verdict.p_value
            if pos > 0:
                changed[g] = _changed_text(verdict, order, pos, fingerprints, backend, sweep_ids)
    out["change"] = change
    out["change_pct"] = change_pct
    out["p_value"] = p_value
    out["changed"] = changed


def _cells_in_time_order(out: pd.DataFrame) -> list[list[int]]:
    """Per cell, its rows of ``out`` in time order; a sweep without a time keeps its place in the store's
    order, after the timed ones."""
    when_ns = out["_when_ns"].to_numpy()
    orders = out["_order"].to_numpy()
    return [
        sorted((int(g) for g in positions), key=lambda g: _time_key(float(when_ns[g]), int(orders[g])))
        for positions in out.groupby("_cell", sort=False).indices.values()
    ]


def _changed_text(
    verdict: Verdict,
    order: list[int],
    pos: int,
    fingerprints: list[dict[str, set[str]]],
    backend: str | None,
    sweep_ids: list[str],
) -> str:
    """What changed at sweep ``order[pos]`` of a cell: since the previous sweep, or for a drift since the
    segment's first; never empty at a flagged change, so a flag always says something."""
    ref = order[verdict.baseline[0]] if verdict.kind == "drift" else order[pos - 1]
    text = fingerprint_change(fingerprints[ref], fingerprints[order[pos]], backend)
    if verdict.kind == "drift":
        return f"gradual drift since {sweep_ids[ref]}; " + (text or NO_SOFTWARE_CHANGE)
    if verdict.change and not text:
        return NO_SOFTWARE_CHANGE
    return text


def regressions(history: pd.DataFrame) -> pd.DataFrame:
    """The rows where the *newest* sweep of a cell (per hardware key) is a flagged slowdown: what
    ``farm history --fail-on-regression`` fails on. A speedup is not a regression; nor is an old step that
    later sweeps have since stayed at (it was flagged where it happened, and is history now)."""
    if history.empty:
        return history
    newest = history.groupby([*CELL_COLUMNS, "hardware_key"], dropna=False, sort=False).tail(1)
    slower = newest["change"].astype(bool) & (newest["change_pct"] < 0)
    return newest.loc[slower.to_numpy()]


# ------------------------------------------------------------------------------------------------- helpers
def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS})


def _timestamps(df: pd.DataFrame) -> np.ndarray:
    """``finished_at`` as nanoseconds since the epoch (float; NaN where unknown or unreadable)."""
    if "finished_at" not in df.columns:
        return np.full(len(df), np.nan)
    t = pd.to_datetime(df["finished_at"], utc=True, errors="coerce", format="ISO8601").dt.tz_convert(None)
    # pandas may parse at another resolution than nanoseconds: converted on the way out
    ns = t.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(float)
    ns[t.isna().to_numpy()] = np.nan
    return ns


def _iso(ns: float) -> str | None:
    if math.isnan(ns):
        return None
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat(timespec="seconds")


def _units(df: pd.DataFrame) -> np.ndarray:
    if "unit" not in df.columns:
        return np.full(len(df), None, dtype=object)
    return df["unit"].astype(object).to_numpy()


def _first_per_group(values: pd.Series, group: np.ndarray, G: int, default: str) -> list[str]:
    """Each group's first non-blank value (as text), else ``default``."""
    out: list[str | None] = [None] * G
    for g, v in zip(group.tolist(), values.tolist(), strict=True):
        if out[g] is None and not _blank(v):
            out[g] = str(v)
    return [v if v is not None else default for v in out]


def _fingerprints(rows: pd.DataFrame, group: np.ndarray, G: int) -> list[dict[str, set[str]]]:
    """Per group: each fingerprint column → the set of values its repeats ran with (invalid ones too: they
    ran the same software)."""
    out: list[dict[str, set[str]]] = [{c: set() for c, _ in FINGERPRINT} for _ in range(G)]
    for column, _ in FINGERPRINT:
        for g, v in zip(group.tolist(), rows[column].tolist(), strict=True):
            if not _blank(v):
                out[g][column].add(str(v))
    return out


def _split(values: np.ndarray, group: np.ndarray, G: int) -> list[np.ndarray]:
    order = np.argsort(group, kind="stable")
    return np.split(values[order], np.cumsum(np.bincount(group, minlength=G))[:-1])


def _time_key(when_ns: float, order: int) -> tuple[bool, float, int]:
    """Sort key of a sweep within a cell: by time, a sweep without one after the timed ones, in store order."""
    missing = math.isnan(when_ns)
    return (missing, 0.0 if missing else when_ns, order)


_SORT = ["workload", "device", "backend", "batch_size"]
_SORT += [c for c in CELL_COLUMNS if c not in _SORT] + ["hardware_key"]


def _ordered(out: pd.DataFrame) -> pd.DataFrame:
    """Cells in report order (workload, device, backend, batch size, the rest, hardware), each cell's sweeps in
    time order (a sweep without a time after the timed ones, in the store's order)."""
    keys: list[tuple[Hashable, ...]] = []
    for rec in out[[*_SORT, "_when_ns", "_order"]].itertuples(index=False, name=None):
        *cell, when, order = rec
        keys.append((*(sort_key(v) for v in cell), *_time_key(when, order)))
    idx = sorted(range(len(keys)), key=keys.__getitem__)
    return out.iloc[idx].reset_index(drop=True)
