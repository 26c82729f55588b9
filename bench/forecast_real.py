"""Real-data benchmark of the forecast engine against seasonal naive, statsmodels and AutoETS.

Why: the engine's accuracy claims must hold on real demand, measured the way the issue states
them (rolling origins, horizon 14, MASE scaled by the in-sample seasonal naive error), next to the
references a reviewer would reach for. Runs on every `*.csv` / `*.csv.gz` of the real-demand
folder (default `../shared/data/real-demand/` beside the repository; says so when it is absent)
and of any `--extra` folders. For each data set it prints a table of method x (MASE, MASE relative
to seasonal naive, sMAPE, P10-P90 coverage, seconds per series, capacity recall/precision/Brier),
then the engine's robustness to missing days and to one outlier, and its spike-alert rate; at the
end the geometric mean of relative error over the data sets.

The slow baselines (statsmodels Holt-Winters, statsforecast AutoETS) run on a random sample of
`--sample` series of each data set (all series when there are fewer); every method of the table
is scored on that same sample, and the engine is scored on all series too.

    .venv/bin/python bench/forecast_real.py [--quick] [--origins 6] [--sample 300] [--extra DIR]
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.forecast import predict  # noqa: E402
from app.forecast.backtest import (  # noqa: E402
    BacktestResult,
    Dataset,
    backtest_dataset,
    engine_forecaster,
    format_table,
    read_long_csv,
    seasonal_naive,
)
from app.forecast.engine import spike_threshold  # noqa: E402

SPIKE_LEVEL = 0.999


def _fill(y: np.ndarray) -> np.ndarray | None:
    """A gap-free copy for the reference models: leading NaN cut, inner NaN interpolated."""
    obs = np.flatnonzero(~np.isnan(y))
    if obs.size < 2:
        return None
    y = y[obs[0] :]
    idx = np.arange(y.size)
    ok = ~np.isnan(y)
    return np.interp(idx, idx[ok], y[ok])


def statsmodels_hw(history: np.ndarray, horizon: int) -> tuple[np.ndarray, None]:
    """statsmodels ExponentialSmoothing: additive damped trend, additive weekly season."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    snaive, _ = seasonal_naive(history, horizon)
    out = snaive.copy()
    for i, row in enumerate(history):
        y = _fill(row)
        if y is None or y.size < 3 * 7:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = ExponentialSmoothing(
                    y,
                    trend="add",
                    damped_trend=True,
                    seasonal="add",
                    seasonal_periods=7,
                    initialization_method="estimated",
                ).fit()
                fc = fit.forecast(horizon)
            if np.isfinite(fc).all():
                out[i] = np.maximum(fc, 0)
        except Exception:  # noqa: BLE001 - a failed reference fit falls back to seasonal naive
            pass
    return out, None


def autoets(history: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """statsforecast AutoETS (season 7) with its 80% interval as P10/P90."""
    from statsforecast.models import AutoETS

    snaive, _ = seasonal_naive(history, horizon)
    mean = snaive.copy()
    q = np.stack([snaive * 0.0, snaive * 2.0])
    for i, row in enumerate(history):
        y = _fill(row)
        if y is None or y.size < 2 * 7 + 2:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = AutoETS(season_length=7).forecast(y=y.astype(np.float64), h=horizon, level=[80])
            m = np.asarray(res["mean"])
            if np.isfinite(m).all():
                mean[i] = np.maximum(m, 0)
                q[0, i] = np.maximum(np.asarray(res["lo-80"]), 0)
                q[1, i] = np.maximum(np.asarray(res["hi-80"]), 0)
        except Exception:  # noqa: BLE001
            pass
    return mean, q


def cached(method: Any, folder: Path) -> Any:
    """`method` with its answers kept on disk by a hash of its input, for iterating on the engine
    without refitting the slow baselines each time (`--cache`; their seconds per series then read
    as the cache's, so figures for a report are taken without it)."""
    import hashlib
    import pickle

    folder.mkdir(parents=True, exist_ok=True)

    def run(history: np.ndarray, horizon: int) -> Any:
        key = hashlib.sha1(np.ascontiguousarray(history, dtype=np.float64).tobytes() + str(horizon).encode())
        path = folder / f"{method.__name__}-{key.hexdigest()}.pkl"
        if path.exists():
            with path.open("rb") as f:
                return pickle.load(f)
        out = method(history, horizon)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(out, f)
        os.replace(tmp, path)  # concurrent runs sharing the folder never read half a file
        return out

    run.__name__ = method.__name__
    return run


def robustness(values: np.ndarray, horizon: int, origins: int = 1) -> dict[str, float]:
    """Median |change| of the 14-day forecast total with the last 2 / 7 days missing, and the
    median and 90th percentile ratio with the last day set to 20x the recent median.

    Each comparison is for the same `horizon` target days: the history up to an origin, and the
    same history with its last 2 / 7 days set to NaN (so the forecast is 3..16 / 8..21 days ahead
    of the last observation). Scored over the newest origin and the `origins` - 1 weekly origins
    before it (one origin is a single calendar week: a holiday or the end of a lockdown there
    decides the figure), on the series observed on every removed day (a series whose data had
    already ended moves 0% by construction and would dilute the median)."""
    days = values.shape[1]
    moved: dict[int, list[np.ndarray]] = {2: [], 7: []}
    ratios: list[np.ndarray] = []
    for j in range(max(1, origins)):
        cut = days - 7 * j
        if j and cut < 28:  # the newest origin always; earlier ones with 4 weeks of history
            break
        h = values[:, max(0, cut - 730) : cut]
        base = predict(h, horizon).mean.sum(axis=1)
        for gap in (2, 7):
            keep = (base > 0) & np.isfinite(h[:, -gap:]).all(axis=1)
            v = h.copy()
            v[:, -gap:] = np.nan
            tot = predict(v, horizon).mean.sum(axis=1)
            moved[gap].append(np.abs(tot[keep] / base[keep] - 1))
        v = h.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            med = np.nanmedian(h[:, -28:], axis=1)
        ok = (base > 0) & np.isfinite(med) & (med > 0) & np.isfinite(h[:, -1])
        v[:, -1] = np.where(ok, 20 * np.nan_to_num(med), v[:, -1])
        tot = predict(v, horizon).mean.sum(axis=1)
        ratios.append(tot[ok] / base[ok])
    out: dict[str, float] = {"origins": float(len(ratios))}
    for gap in (2, 7):
        m = np.concatenate(moved[gap]) if moved[gap] else np.zeros(0)
        out[f"missing_{gap}"] = float(np.median(m)) if m.size else float("nan")
        out[f"missing_{gap}_n"] = float(m.size)
    ratio = np.concatenate(ratios) if ratios else np.zeros(0)
    out["outlier_median"] = float(np.median(ratio)) if ratio.size else float("nan")
    out["outlier_p90"] = float(np.quantile(ratio, 0.9)) if ratio.size else float("nan")
    out["outlier_series"] = int(ratio.size)
    return out


def spike_rate(values: np.ndarray, runs: int) -> dict[str, float]:
    """Spike alerts per series per run at SPIKE_LEVEL over the last `runs` days (each day judged
    against the threshold from the days before it), and the share of series alerted at least once."""
    n, days = values.shape
    hits = np.zeros(n)
    judged = 0
    for t in range(max(14, days - runs), days):
        thr = spike_threshold(values[:, :t], SPIKE_LEVEL)
        x = values[:, t]
        hits += np.where(np.isfinite(x) & np.isfinite(thr), x > thr, False)
        judged += 1
    return {
        "alerts_per_series_run": float(hits.sum() / max(1, n * judged)),
        "series_alerted": float((hits > 0).mean()) if n else 0.0,
        "runs": judged,
    }


CURVE_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9)


def _path_probability(fitted: Any, mean: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """The engine's exceedance rule (pooled backtest error paths added to a mean forecast, share
    of paths whose peak exceeds capacity) fed another mean forecast (lines x horizon)."""
    paths = fitted.paths
    z = np.moveaxis(paths, -1, 0).reshape(-1, paths.shape[1])
    z = z[np.isfinite(z).all(axis=1)]
    prob = np.full(mean.shape[0], np.nan)
    if z.shape[0] == 0:
        return prob
    for i in range(mean.shape[0]):
        if np.isfinite(cap[i]) and cap[i] > 0:
            peaks = (mean[i][None, :] + fitted.scale[i] * z).max(axis=1)
            prob[i] = float((peaks > cap[i]).mean())
    return prob


def capacity_curve(ds: Dataset, horizon: int, origins: int, with_autoets: bool) -> dict[str, list[tuple[float, bool]]]:
    """(probability, overloaded) per line-origin for the engine's rule, the same rule fed
    AutoETS's forecast of the line load, and fed the actual future mean load (an oracle-ish upper
    bound: the rule with a perfect 14-day level), at `origins` weekly origins."""
    from app.forecast.backtest import CAPACITY_DAYS, CAPACITY_QUANTILE, origin_cuts
    from app.forecast.engine import _fit, line_totals
    from app.forecast.engine.capacity import EXCEEDANCE_ORIGINS, EXCEEDANCE_SPACING

    _codes, lidx = ds.line_index
    loads = line_totals(ds.values.astype(np.float64), lidx)
    out: dict[str, list[tuple[float, bool]]] = {"engine": [], "rule fed AutoETS": [], "rule fed actual mean": []}
    for cut in origin_cuts(loads.shape[1], horizon, origins):
        lh = loads[:, max(0, cut - CAPACITY_DAYS) : cut]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cap = np.where(np.isfinite(lh).sum(axis=1) >= 28, np.nanquantile(lh, CAPACITY_QUANTILE, axis=1), np.nan)
        la = loads[:, cut : cut + horizon]
        over = (la > cap[:, None]).any(axis=1)
        judged = np.isfinite(cap) & (cap > 0) & np.isfinite(la).any(axis=1)
        if not judged.any():
            continue
        fitted = _fit(
            loads[:, :cut],
            horizon,
            eval_horizon=horizon,
            origins=EXCEEDANCE_ORIGINS,
            spacing=EXCEEDANCE_SPACING,
            keep_paths=True,
        )
        probs = {"engine": _path_probability(fitted, fitted.prediction.mean, cap)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            actual_mean = np.nan_to_num(np.nanmean(la, axis=1))
        probs["rule fed actual mean"] = _path_probability(fitted, np.repeat(actual_mean[:, None], horizon, 1), cap)
        if with_autoets:
            fc, _ = autoets(loads[:, :cut], horizon)
            probs["rule fed AutoETS"] = _path_probability(fitted, fc, cap)
        for name, pr in probs.items():
            for i in np.flatnonzero(judged & np.isfinite(pr)):
                out[name].append((float(pr[i]), bool(over[i])))
    return out


def print_curve(pairs: dict[str, list[tuple[float, bool]]]) -> None:
    """Recall and precision of a warning at each probability threshold, the best recall with
    precision >= 0.8, and the Brier score, per method."""
    for name, pp in pairs.items():
        if not pp:
            continue
        p = np.array([a for a, _ in pp])
        e = np.array([b for _, b in pp])
        cells = []
        best = None
        for thr in CURVE_THRESHOLDS:
            w = p >= thr
            tp = int((w & e).sum())
            rec = tp / e.sum() if e.sum() else float("nan")
            prec = tp / w.sum() if w.sum() else float("nan")
            cells.append(f"{thr:.2f}:{rec:.2f}/{prec:.2f}")
            if w.sum() and prec >= 0.8 and (best is None or rec > best[1]):
                best = (thr, rec, prec)
        brier = float(np.mean((p - e) ** 2))
        print(f"  {name:<22} {len(p)} line-origins, {int(e.sum())} overloads, Brier {brier:.3f}")
        print("    threshold:recall/precision  " + "  ".join(cells))
        if best:
            print(
                f"    best recall at precision >= 0.8: {best[1]:.2f} (threshold {best[0]:.2f}, precision {best[2]:.2f})"
            )
        else:
            print("    no threshold reaches precision 0.8")


def align_ends(ds: Dataset) -> Dataset:
    """Each series shifted so that its last observation is on the last day: for collections
    whose series end on different dates without a shared calendar (M4), so that every series is
    scored at the rolling origins, not only the ones that run to the file's last date."""
    v = ds.values
    obs = ~np.isnan(v)
    last = np.where(obs.any(axis=1), v.shape[1] - 1 - np.argmax(obs[:, ::-1], axis=1), v.shape[1] - 1)
    out = np.full_like(v, np.nan)
    for i, e in enumerate(last):
        shift = v.shape[1] - 1 - e
        out[i, shift:] = v[i, : v.shape[1] - shift]
    return Dataset(ds.name, ds.series, ds.lines, ds.start, out)


def subset(ds: Dataset, rows: np.ndarray) -> Dataset:
    return Dataset(ds.name, [ds.series[i] for i in rows], [ds.lines[i] for i in rows], ds.start, ds.values[rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "real-demand"))
    ap.add_argument("--extra", action="append", default=[], help="more folders of long CSV files")
    ap.add_argument("--origins", type=int, default=6)
    ap.add_argument("--horizon", type=int, default=14)
    ap.add_argument("--sample", type=int, default=300, help="series per data set for the slow baselines")
    ap.add_argument("--quick", action="store_true", help="2 origins, 60-series sample, no statsmodels")
    ap.add_argument("--only", action="append", default=None, help="data set names to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--align-ends",
        action="store_true",
        help="shift each series to end on the last day (series on different calendars, e.g. M4)",
    )
    ap.add_argument(
        "--capacity-origins",
        type=int,
        default=12,
        help="weekly origins of the capacity precision-recall curve (0: skip it)",
    )
    ap.add_argument(
        "--capacity-autoets",
        action="store_true",
        help="the curve also feeds the rule AutoETS's line forecasts (slow: one AutoETS fit per line and origin)",
    )
    ap.add_argument(
        "--max-days",
        type=int,
        default=1100,
        help="keep only the last this-many days of each data set (the slow baselines' fit time)",
    )
    ap.add_argument(
        "--cache",
        action="store_true",
        help="keep the slow baselines' forecasts in var/bench/baseline-cache (for iterating; their seconds are then the cache's)",
    )
    args = ap.parse_args()
    if args.cache:
        global statsmodels_hw, autoets
        statsmodels_hw = cached(statsmodels_hw, ROOT / "var" / "bench" / "baseline-cache")
        autoets = cached(autoets, ROOT / "var" / "bench" / "baseline-cache")
    if args.quick:
        args.origins, args.sample = min(args.origins, 2), min(args.sample, 60)
    files: list[str] = []
    if os.path.isdir(args.data):
        files += sorted(glob.glob(os.path.join(args.data, "*.csv*")))
    else:
        print(f"real-demand data folder {args.data} is absent: only --extra folders are benchmarked")
    for extra in args.extra:
        files += sorted(glob.glob(os.path.join(extra, "*.csv*")))
    if not files:
        print("no data files: nothing to benchmark")
        return
    print(
        f"forecast_real: horizon {args.horizon}, {args.origins} origins one week apart, "
        f"slow baselines on <= {args.sample} sampled series per data set, cpu count {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    methods: dict[str, Any] = {"engine": engine_forecaster, "seasonal_naive": seasonal_naive}
    if not args.quick:
        methods["statsmodels_hw"] = statsmodels_hw
    methods["autoets"] = autoets
    rel: dict[str, list[float]] = {}
    cap_all: dict[str, list[float]] = {}  # method -> [overloads, warned, warned hits, Brier sum, line origins]
    curve: dict[str, list[tuple[float, bool]]] = {}
    rng = np.random.default_rng(args.seed)
    for path in files:
        for ds in read_long_csv(path):
            if args.only and ds.name not in args.only:
                continue
            if args.align_ends:
                ds = align_ends(ds)
            if ds.values.shape[1] > args.max_days:
                ds = Dataset(ds.name, ds.series, ds.lines, ds.start, ds.values[:, -args.max_days :])
            n, days = ds.values.shape
            rows = np.sort(rng.choice(n, size=min(n, args.sample), replace=False))
            sample = subset(ds, rows)
            t0 = time.perf_counter()
            scores, info = backtest_dataset(sample, args.horizon, args.origins, methods)
            if n > len(rows):
                all_scores, all_info = backtest_dataset(
                    ds, args.horizon, args.origins, {"engine": engine_forecaster, "seasonal_naive": seasonal_naive}
                )
                scores["engine (all series)"] = all_scores["engine"]
                scores["snaive (all)"] = all_scores["seasonal_naive"]
                info["note"] = f"table on {len(rows)} sampled series; '(all)' rows on all {n}"
            base = scores["seasonal_naive"]["mase"]
            for _meth, s in scores.items():
                s["rel_mase"] = s["mase"] / base if s.get("mase") is not None and base else None
            result = BacktestResult(args.horizon, args.origins, {ds.name: scores}, {ds.name: info})
            print(format_table(result))
            if info.get("note"):
                print(f"  ({info['note']})")
            for meth, s in scores.items():
                if s.get("line_origins") and "(all" not in meth:
                    acc = cap_all.setdefault(meth, [0.0] * 5)
                    for k, v in enumerate(
                        (
                            s["overloads"],
                            s.get("warned", 0),
                            s.get("warned_hits", 0),
                            (s.get("brier") or 0.0) * s["line_origins"],
                            s["line_origins"],
                        )
                    ):
                        acc[k] += v
            base_all = scores.get("snaive (all)", scores["seasonal_naive"])["mase"]
            for meth, s in scores.items():
                if meth in ("seasonal_naive", "snaive (all)"):
                    continue
                denom = base_all if meth == "engine (all series)" else base
                if s.get("mase") and denom:
                    rel.setdefault(meth, []).append(s["mase"] / denom)
            cut = days  # robustness at the newest origin: the full history
            rob = robustness(ds.values, args.horizon, args.origins)
            print(
                f"  robustness (engine, {rob['origins']:.0f} weekly origins from the newest, the same 14 target days; "
                f"series observed on the removed days): last 2 days missing -> total moves "
                f"{100 * rob['missing_2']:.1f}% (target <= 5%; {rob['missing_2_n']:.0f} series-origins), last 7 days "
                f"missing -> {100 * rob['missing_7']:.1f}% (target <= 10%; {rob['missing_7_n']:.0f}); one 20x day "
                f"on the last day -> x{rob['outlier_median']:.3f} median, x{rob['outlier_p90']:.3f} P90 "
                f"(target <= 1.5; {rob['outlier_series']} series-origins)"
            )
            sp = spike_rate(ds.values[:, :cut], 28 if not args.quick else 7)
            print(
                f"  spike threshold (P{100 * SPIKE_LEVEL:g}): {sp['alerts_per_series_run']:.4f} alerts per series "
                f"per run, {100 * sp['series_alerted']:.1f}% of series alerted at least once in "
                f"{sp['runs']} runs"
            )
            if args.capacity_origins:
                for name, pp in capacity_curve(ds, args.horizon, args.capacity_origins, args.capacity_autoets).items():
                    curve.setdefault(name, []).extend(pp)
            print(f"  ({time.perf_counter() - t0:.1f} s)")
    print("\ngeometric mean of MASE relative to seasonal naive over data sets:")
    for meth, vals in rel.items():
        g = math.exp(sum(math.log(v) for v in vals) / len(vals))
        print(f"  {meth:<20} {g:.3f}  ({len(vals)} data sets)")
    print(
        "\ncapacity warnings over all lines and origins of all data sets (high severity; target: recall >= 0.8 "
        "at precision >= 0.8):"
    )
    for meth, (events, warned, hits, brier_sum, judged) in cap_all.items():
        recall = f"{hits / events:.2f}" if events else "-"
        precision = f"{hits / warned:.2f}" if warned else "-"
        print(
            f"  {meth:<20} recall {recall} ({int(hits)}/{int(events)} overloads), precision {precision} "
            f"({int(warned)} warnings), Brier {brier_sum / judged:.3f} ({int(judged)} line origins)"
        )
    if curve:
        print(
            f"\ncapacity precision-recall curve over {args.capacity_origins} weekly origins of all data sets (the "
            "engine's path rule; the same rule fed AutoETS's line forecast; fed the actual future mean load):"
        )
        print_curve(curve)


if __name__ == "__main__":
    main()
