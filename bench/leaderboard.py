"""The leaderboard: every ok run, grouped over seeds, beside the baseline it came from.

One table per (dataset, budget), rows sorted by model then size. Differences are against
the `none` run of the same model, dataset, budget and seed. Failed and not-applicable runs
are listed with their reasons so a gap in the table is never silent.
"""

from __future__ import annotations

import csv
import io
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.atomic import atomic_write_text
from bench.facts import DeployLatency, Distill, OrtTiming, Teacher, read
from bench.records import OK, iter_records, stale_reason
from bench.spec import stable_hash


def _group_key(rec: dict[str, Any]) -> str:
    """Seeds of one configuration, measured in one setting: a run id does not name the
    device or the thread count (docs/reliability.md), but both change the figures, so runs
    that differ in them are never averaged into one row."""
    ident = dict(rec["config"])
    ident.pop("seed", None)
    ident.pop("label", None)
    return stable_hash([ident, _setting(rec)])


def _setting(rec: dict[str, Any]) -> tuple[Any, Any]:
    env = rec.get("env") or {}
    return env.get("device"), env.get("threads")


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)


def paired_ci95(deltas: list[float]) -> float | None:
    """Half-width of the 95 % t-interval of the mean of per-seed paired differences."""
    n = len(deltas)
    if n < 2:
        return None
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1) * statistics.stdev(deltas) / n**0.5)


def _speedup(rec: dict[str, Any], base: dict[str, Any]) -> tuple[float, float | None, bool]:
    """(speedup, IQR of its per-round ratios, noisy). A run timed against its baseline in
    its own process (bench/latency.py: interleaved, same input, threads and runtime) gives
    the median of the per-round ratios. An older record without that falls back to what
    it has, with no spread: onnxruntime rows their in-run float ONNX comparison
    (`facts.OrtTiming`), other rows the quotient of two processes' timings."""
    m = rec["metrics"]
    if m.get("latency_paired"):
        return float(m["speedup"]), float(m["speedup_iqr"]), bool(m.get("latency_noisy"))
    ort = read(rec, OrtTiming)
    if m.get("runtime") == "onnxruntime" and ort and ort.ort_speedup:
        return float(ort.ort_speedup), None, False
    return base["metrics"]["latency_ms"] / m["latency_ms"], None, False


def _own_cost_s(rec: dict[str, Any]) -> float | None:
    """What the row itself cost: a method row its own compute, without the baselines it
    loaded (trained once, in whichever process, and recorded separately under
    `cost.baselines`); a baseline row its training and evaluation."""
    cost = rec.get("cost")
    if not cost:
        return None
    if rec.get("method") == "none" or "run_s" not in cost:
        return float(cost["total_s"])
    return float(cost["run_s"])


def _checkpoint(rec: dict[str, Any]) -> str | None:
    return (rec.get("baseline") or {}).get("sha256")


def paired_baseline(rec: dict[str, Any], by_id: dict[str, dict[str, Any]]
                    ) -> dict[str, Any] | None:
    """The baseline record `rec` is compared with: its `baseline_run_id`, and only if that
    row measured the very checkpoint `rec` started from (both name its SHA-256). A cached
    baseline retrained after its row was recorded gives other weights: no difference is
    computed against a baseline the run did not start from (one line on stderr)."""
    b = by_id.get(rec.get("baseline_run_id"))
    if b is None:
        return None
    mine, theirs = _checkpoint(rec), _checkpoint(b)
    if mine and theirs and mine != theirs:
        print(f"warning: run {rec['run_id']} started from baseline checkpoint {mine[:12]}, "
              f"but baseline run {b['run_id']} measured {theirs[:12]}: no ΔmIoU for it; "
              f"re-run one of them", file=sys.stderr)
        return None
    return b


def _same_machine_setting(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Latencies compare only at the same device and thread count."""
    ea, eb = a.get("env") or {}, b.get("env") or {}
    return all(ea.get(k) == eb.get(k) for k in ("device", "threads"))


def _config_label(rec: dict[str, Any]) -> str:
    parts = []
    for st in rec["config"].get("stages", []):
        from bench.method import METHODS, config_label

        try:
            cls = METHODS.get(st["method"])
            parts.append(config_label(cls.Config(**st.get("config", {}))))
        except Exception:  # a record from a plugin that is no longer installed
            parts.append(",".join(f"{k}={v}" for k, v in st.get("config", {}).items()))
    return "; ".join(p for p in parts if p)


def build_rows(results: Path, malformed: list[Path] | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, failed runs); records failing the schema are named on stderr, skipped and
    appended to `malformed`."""
    ok, failed, stale = [], [], []
    for r in iter_records(results, include_stale=True, malformed=malformed):
        reason = stale_reason(r)
        if reason:
            stale.append(dict(r, status="stale", error=reason))
        else:
            (ok if r.get("status") == OK else failed).append(r)
    failed += stale
    by_id = {r["run_id"]: r for r in ok}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        groups[_group_key(r)].append(r)
    rows, settings = [], []
    for recs in groups.values():
        r0 = recs[0]
        m = [r["metrics"] for r in recs]
        miou, miou_sd = _mean_std([x["miou"] for x in m])
        deltas, speedups, class_deltas = [], [], []
        for r in recs:
            b = paired_baseline(r, by_id)
            if r["metrics"].get("latency_paired") or (
                    b is not None and _same_machine_setting(r, b)):
                speedups.append(_speedup(r, b))
            if b is not None:
                deltas.append(r["metrics"]["miou"] - b["metrics"]["miou"])
                class_deltas.append([
                    None if x is None or y is None else x - y
                    for x, y in zip(r["metrics"].get("per_class_iou", []),
                                    b["metrics"].get("per_class_iou", []))
                ])
        ci = paired_ci95(deltas)
        distill = _distill_columns(recs, by_id)
        costs = [c for c in map(_own_cost_s, recs) if c is not None]
        full_costs = [r["cost"]["total_s"] for r in recs if "cost" in r]
        iqrs = [s[1] for s in speedups if s[1] is not None]
        base_madds = [by_id[r["baseline_run_id"]]["metrics"]["madds"] for r in recs
                      if r.get("baseline_run_id") in by_id]
        rows.append({
            "dataset": r0["dataset"],
            "budget": r0["budget"],
            "model": r0["model"],
            "method": r0.get("label", r0["method"]),
            "config": _config_label(r0),
            **budget_columns(r0),
            "seeds": len(recs),
            "miou": miou,
            "miou_std": miou_sd,
            "delta_miou": statistics.fmean(deltas) if deltas else None,
            "delta_ci95": ci,
            "significant": None if ci is None else abs(statistics.fmean(deltas)) > ci,
            "pixel_acc": statistics.fmean(x["pixel_acc"] for x in m),
            "params": r0["metrics"]["params"],
            "nonzero_params": r0["metrics"]["nonzero_params"],
            "sparsity": statistics.fmean(x["sparsity"] for x in m),
            "size_bytes": statistics.fmean(x["size_bytes"] for x in m),
            "compression_ratio": statistics.fmean(x["compression_ratio"] for x in m),
            "madds": r0["metrics"]["madds"],
            "effective_madds": statistics.fmean(x["effective_madds"] for x in m),
            "madds_ratio": (base_madds[0] / r0["metrics"]["madds"])
            if base_madds and r0["metrics"]["madds"] else None,
            "latency_ms": statistics.fmean(x["latency_ms"] for x in m),
            "latency_iqr_ms": statistics.fmean(x["latency_iqr_ms"] for x in m),
            "speedup": statistics.fmean(s[0] for s in speedups) if speedups else None,
            "speedup_iqr": statistics.fmean(iqrs) if speedups and len(iqrs) == len(speedups)
            else None,
            "speedup_paired": bool(speedups) and len(iqrs) == len(speedups),
            "latency_noisy": any(s[2] for s in speedups),
            "runtime": r0["metrics"].get("runtime", "torch"),
            "cost_device_hours": statistics.fmean(costs) / 3600 if costs else None,
            "cost_with_baselines_hours": statistics.fmean(full_costs) / 3600
            if full_costs else None,
            "per_class_delta": _mean_lists(class_deltas),
            "run_ids": " ".join(sorted(r["run_id"] for r in recs)),
            "device": _setting(r0)[0],
            "threads": _setting(r0)[1],
            **distill,
            "deploy": _deploy_columns(recs),
        })
        settings.append(_setting_of(r0))
    _name_split_settings(rows, settings)
    rows.sort(key=lambda r: (r["dataset"], r["budget"], r["model"], r["method"] != "none",
                             r["method"], -r["size_bytes"]))
    return rows, failed


def _name_split_settings(rows: list[dict[str, Any]],
                         settings: list[dict[str, Any]]) -> None:
    """Where one configuration has several rows (runs that differ in something its config
    cell does not show: device, thread count, the deployment runtimes it was also timed in,
    or any other setting of its run config), say in each row's config cell what differs,
    and name it once on stderr. `settings[i]` is row i's `_setting_of`."""
    by_config: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_config[(r["dataset"], r["budget"], r["model"], r["method"], r["config"])].append(i)
    for key, idx in by_config.items():
        if len(idx) < 2:
            continue
        ss = [settings[i] for i in idx]
        differ = [k for k in dict.fromkeys(k for s in ss for k in s)
                  if len({repr(s.get(k)) for s in ss}) > 1]
        labels = [_setting_label(s, differ) for s in ss]
        if len(set(labels)) < len(labels):  # the short form hid the difference
            labels = [", ".join(f"{k}={s.get(k)}" for k in differ) for s in ss]
        what = " and ".join(_SETTING_NAMES.get(k, k) for k in differ) or "nothing recorded"
        print(f"warning: {key[2]} / {key[3]} ({key[0]}, {key[1]}) has {len(idx)} rows that "
              f"differ in {what}; shown as separate rows, never averaged", file=sys.stderr)
        for i, label in zip(idx, labels):
            rows[i]["config"] = "; ".join(x for x in (rows[i]["config"], label) if x)


# what a setting is called in the warning that rows of one configuration were kept apart
_SETTING_NAMES = {"device": "device", "threads": "thread count",
                  "runtimes": "deployment runtimes timed (--set runtimes)"}


def _setting_of(rec: dict[str, Any]) -> dict[str, Any]:
    """Everything that keeps `rec` apart from runs of the same config cell: the machine
    setting, then its run config flattened to dotted keys (seed and label left out: seeds
    are averaged, and the label is the method column)."""
    device, threads = _setting(rec)
    ident = {k: v for k, v in rec["config"].items() if k not in ("seed", "label")}
    ident.setdefault("runtimes", [])  # a record from before the setting: none timed
    return {"device": device, "threads": threads, **_flatten(ident)}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        return {k: v for key, val in d.items() for k, v in _flatten(val, f"{prefix}{key}.").items()}
    if isinstance(d, list) and any(isinstance(x, (dict, list)) for x in d):
        return {k: v for i, val in enumerate(d) for k, v in _flatten(val, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): tuple(d) if isinstance(d, list) else d}


def _setting_label(s: dict[str, Any], differ: list[str]) -> str:
    """Device and thread count ("cpu, 1 thread"), then what else differs from the other
    rows of its configuration: the `--set runtimes=` list it was also timed in, by name
    (none: nothing added), any other setting as key=value."""
    threads = s.get("threads")
    parts = [str(s.get("device")) if s.get("device") is not None else "",
             "" if threads is None else f"{threads} thread{'' if threads == 1 else 's'}"]
    for k in differ:
        if k == "runtimes":
            parts.append("runtimes: " + ", ".join(s[k]) if s.get(k) else "")
        elif k not in ("device", "threads"):
            parts.append(f"{k}={s.get(k)}")
    return ", ".join(p for p in parts if p)


def budget_columns(rec: dict[str, Any]) -> dict[str, Any]:
    """What the run's budget did to the data, so a table says what its figures measure:
    epochs, training size (short side the images were resized to, native if none, and
    the crop) and the evaluation size (short side)."""
    b = rec.get("config", {}).get("budget", {})
    work = b.get("work_size")
    return {"epochs": b.get("epochs"),
            "train_size": f"{work or 'native'}, crop {b.get('crop_size')}",
            "eval_size": b.get("eval_size") or "native",
            "class_weights": rec.get("config", {}).get("train", {}).get("class_weights",
                                                                        "none"),
            "loss": rec.get("config", {}).get("train", {}).get("loss", "ce")}


def _budget_line(rows: list[dict[str, Any]]) -> str:
    seen = sorted({(str(r["epochs"]), r["train_size"], str(r["eval_size"]),
                    r["class_weights"], r["loss"]) for r in rows})
    return "; ".join(f"{e} epochs, train at short side {t}, evaluate at short side {v}, "
                     f"class weights {w}, loss {x}" for e, t, v, w, x in seen)


def _distill_columns(recs: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
                     ) -> dict[str, Any]:
    """A distilled student against its teacher and against the same student trained without
    distillation (`facts.Distill.undistilled_run_id`, paired by seed): the comparison that
    says whether distilling helped, which ΔmIoU against the baseline does not."""
    out = {"teacher": None, "teacher_miou": None, "undistilled": None,
           "undistilled_miou": None, "delta_undistilled": None, "delta_undistilled_ci95": None}
    teachers = [t for t in (read(r, Teacher) for r in recs) if t is not None]
    if not teachers:
        return out
    t = teachers[0]
    out["teacher"] = f"{t.model} ({t.run_id})"
    out["teacher_miou"] = statistics.fmean(x.miou for x in teachers)
    ids = [d.undistilled_run_id if d else None for d in (read(r, Distill) for r in recs)]
    pairs = [(r["metrics"]["miou"], by_id[i]) for r, i in zip(recs, ids) if i in by_id]
    if pairs:
        u0 = pairs[0][1]
        out["undistilled"] = f"{u0.get('label', u0['method'])} ({u0['run_id']})"
        out["undistilled_miou"] = statistics.fmean(u["metrics"]["miou"] for _, u in pairs)
        diffs = [m - u["metrics"]["miou"] for m, u in pairs]
        out["delta_undistilled"] = statistics.fmean(diffs)
        out["delta_undistilled_ci95"] = paired_ci95(diffs)
    else:
        out["undistilled"] = "not run (" + ", ".join(sorted({i for i in ids if i})) + ")"
    return out


def _deploy_columns(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per runtime the row was also timed in (`facts.DeployLatency`): the mean over seeds
    of its paired speedup against the baseline in that runtime, the speedup's IQR, the
    precision it ran in and its argmax agreement with the PyTorch model; or why it was not
    timed there."""
    facts = [f for f in (read(r, DeployLatency) for r in recs) if f is not None]
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(k for f in facts for k in f.runtimes):
        timed = [t for t in (f.timings().get(name) for f in facts) if t is not None]
        if timed:
            out[name] = {
                "speedup": statistics.fmean(t.speedup for t in timed),
                "speedup_iqr": statistics.fmean(t.speedup_iqr for t in timed),
                "latency_ms": statistics.fmean(t.latency_ms for t in timed),
                "precision": "/".join(sorted({t.precision for t in timed})),
                "agreement": min(t.agreement for t in timed),
                "noisy": any(t.noisy for t in timed),
            }
        else:
            why = next(v.get("skipped") or v.get("error") for f in facts
                       for k, v in f.runtimes.items() if k == name)
            out[name] = {"not_timed": why}
    return out


def _mean_lists(lists: list[list[float | None]]) -> list[float | None]:
    if not lists:
        return []
    out = []
    for col in zip(*lists):
        vals = [v for v in col if v is not None]
        out.append(statistics.fmean(vals) if vals else None)
    return out


def _fmt(v: Any, spec: str, empty: str = "–") -> str:
    return empty if v is None else format(v, spec)


def _md_row(r: dict[str, Any]) -> list[str]:
    miou = f"{100 * r['miou']:.1f}"
    if r["seeds"] > 1:
        miou += f" ± {100 * r['miou_std']:.1f}"
    return [
        r["model"],
        r["method"],
        r["config"] or "",
        str(r["seeds"]),
        miou,
        _delta(r),
        f"{100 * r['pixel_acc']:.1f}",
        f"{r['params'] / 1e6:.3f}",
        f"{100 * r['sparsity']:.1f}",
        f"{r['size_bytes'] / 1e6:.3f}",
        f"{r['compression_ratio']:.1f}×",
        f"{r['madds'] / 1e9:.3f}",
        f"{r['effective_madds'] / 1e9:.3f}",
        _fmt(r["madds_ratio"], ".2f"),
        f"{r['latency_ms']:.2f} ({r['latency_iqr_ms']:.2f})",
        _speedup_cell(r),
        r["runtime"],
        _fmt(r["cost_device_hours"], ".3f"),
    ]


def _speedup_cell(r: dict[str, Any]) -> str:
    """Paired speedup with the IQR of its per-round ratios; `!` marks a noisy timing
    (spread above the median), `unpaired` a record timed apart from its baseline."""
    if r["speedup"] is None:
        return "–"
    if not r["speedup_paired"]:
        return f"{r['speedup']:.2f} unpaired"
    return f"{r['speedup']:.2f} ({r['speedup_iqr']:.2f})" + (" !" if r["latency_noisy"] else "")


def _delta(r: dict[str, Any]) -> str:
    """ΔmIoU in points; with several seeds its paired 95 % CI, starred when it excludes 0."""
    return _signed_points(r["delta_miou"], None if r["method"] == "none" else r["delta_ci95"])


def _signed_points(delta: float | None, ci95: float | None) -> str:
    """A difference of mIoU in points, with its 95 % CI (starred when it excludes 0)."""
    if delta is None:
        return "–"
    text = f"{100 * delta:+.1f}"
    if ci95 is not None:
        text += f" ± {100 * ci95:.1f}" + ("*" if abs(delta) > ci95 else "")
    return text


HEADERS = ["model", "method", "config", "seeds", "mIoU %", "ΔmIoU", "pix acc %", "params M",
           "sparsity %", "size MB", "ratio", "MAdds G", "eff. MAdds G", "MAdds ×",
           "latency ms (IQR)", "speedup (IQR)", "runtime", "cost h"]


DISTILL_HEADERS = ["model", "student", "config", "seeds", "teacher (run)", "teacher mIoU %",
                   "student mIoU %", "without distillation (run)", "its mIoU %",
                   "Δ from distilling"]


def _pct(v: float | None) -> str:
    return _fmt(None if v is None else 100 * v, ".1f")


def _distill_row(r: dict[str, Any]) -> list[str]:
    delta = _signed_points(r["delta_undistilled"], r["delta_undistilled_ci95"])
    return [r["model"], r["method"], r["config"] or "", str(r["seeds"]), r["teacher"],
            _pct(r["teacher_miou"]), _pct(r["miou"]), r["undistilled"] or "–",
            _pct(r["undistilled_miou"]), delta]


def main_table(rows: list[dict[str, Any]]) -> str:
    """The main table over `rows`, exactly as the leaderboard prints it: the docs quote
    excerpts of it (bench/excerpts.py) in the leaderboard's own columns and format."""
    return tabulate([_md_row(r) for r in rows], headers=HEADERS, tablefmt="github",
                    disable_numparse=True)


def distillation_table(rows: list[dict[str, Any]]) -> str:
    """The distillation table over the distilled rows among `rows` (as `main_table`)."""
    return tabulate([_distill_row(r) for r in rows if r.get("teacher")],
                    headers=DISTILL_HEADERS, tablefmt="github", disable_numparse=True)


def budget_line(rows: list[dict[str, Any]]) -> str:
    """What the budget of `rows` did to the data, as the leaderboard's `Budget:` line."""
    return _budget_line(rows)


def stages_label(stages: list[dict[str, Any]]) -> str:
    """The config cell of a row whose resolved stages are `stages`: what a planned
    variant (`bench.method.Variant.resolved()`) will read as once it has a row."""
    return _config_label({"config": {"stages": stages}})


def _deploy_cell(d: dict[str, Any] | None) -> str:
    if d is None:
        return "–"
    if "not_timed" in d:
        return "not timed"
    return (f"{d['speedup']:.2f} ({d['speedup_iqr']:.2f}){' !' if d['noisy'] else ''} "
            f"{d['precision']}, {100 * d['agreement']:.1f} %")


def _efficiency(r: dict[str, Any]) -> str:
    """The best runtime's speedup divided by the MAdds reduction: how much of a pruned
    model's saving in arithmetic a runtime turns into time (1.0: all of it)."""
    ratio = r["madds_ratio"]
    timed = {n: d["speedup"] for n, d in r["deploy"].items() if "speedup" in d}
    if not ratio or not timed:
        return "–"
    best = max(timed, key=timed.get)
    return f"{timed[best] / ratio:.2f} ({best})"


def render_deployment(rows: list[dict[str, Any]]) -> list[str]:
    """The deployment-latency table: one row per method configuration, per runtime its
    speedup against the baseline exported to the same runtime (paired, IQR), the precision
    it ran in and the agreement of its argmax with the PyTorch model (the lowest over
    seeds). Rows without deployment timings are left out; none: no table."""
    rows = [r for r in rows if r.get("deploy")]
    if not rows:
        return []
    from bench.runtimes import NAMES

    names = sorted({k for r in rows for k in r["deploy"]}, key=NAMES.index)
    table = [[r["model"], r["method"], r["config"] or "", str(r["seeds"]),
              f"{100 * r['miou']:.1f}", _fmt(r["madds_ratio"], ".2f")]
             + [_deploy_cell(r["deploy"].get(n)) for n in names] + [_efficiency(r)]
             for r in rows]
    reasons: dict[str, list[str]] = defaultdict(list)  # why -> the rows it applies to
    for r in rows:
        for d in r["deploy"].values():
            if "not_timed" in d:
                label = f"{r['model']} / {' '.join(filter(None, (r['method'], r['config'])))}"
                if label not in reasons[d["not_timed"]]:
                    reasons[d["not_timed"]].append(label)
    notes = [f"- {', '.join(who)}: {why}" for why, who in sorted(reasons.items())]
    return (["### deployment latency: each row against the baseline in the same runtime", "",
             "Speedup (IQR of the per-round ratios) against the trained baseline exported to "
             "the same runtime and timed interleaved with the row in one process; then the "
             "precision the runtime ran the row in, read from its graph, and the agreement "
             "of its argmax with the PyTorch model. `!`: a noisy timing. The last column "
             "divides the best runtime's speedup by the MAdds reduction (for a pruned row, "
             "the share of its saved arithmetic that became time). docs/runtimes.md says "
             "what each runtime is.", "",
             tabulate(table, headers=["model", "method", "config", "seeds", "mIoU %",
                                      "MAdds ×", *names, "speedup ÷ MAdds × (best)"],
                      tablefmt="github", disable_numparse=True), ""]
            + (["Not timed:", "", *notes, ""] if notes else []))


def render_markdown(rows: list[dict[str, Any]], failed: list[dict[str, Any]]) -> str:
    out = ["# segbench leaderboard", "",
           "Generated by `python -m bench leaderboard` from `runs/*.json`; columns are "
           "explained in docs/leaderboard.md.", ""]
    sections: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        sections[(r["dataset"], r["budget"])].append(r)
    for (ds, bud), rs in sections.items():
        out += [f"## dataset `{ds}`, budget `{bud}`", "", f"Budget: {_budget_line(rs)}.", "",
                main_table(rs), ""]
        distilled = [r for r in rs if r.get("teacher")]
        if distilled:
            out += [f"### distillation (`{ds}`, `{bud}`): each student beside the same "
                    "student trained without distillation", "",
                    distillation_table(distilled), ""]
        out += render_deployment(rs)
    if not rows:
        out += ["No finished runs yet.", ""]
    if failed:
        out += ["## failed, not applicable and stale runs", "",
                "A run that is not applicable asked for something its model does not have "
                "(a re-run does not retry it). Stale runs were computed on an older version "
                "of their dataset and are left out of the tables above; re-run them.", ""]
        out.append(tabulate(
            [[f.get("model"), f.get("label", f.get("method")), f.get("dataset"),
              f.get("budget"), f.get("seed"), f.get("run_id"), f.get("status"),
              (f.get("error") or "").splitlines()[0][:160] if f.get("error") else ""]
             for f in failed],
            headers=["model", "method", "dataset", "budget", "seed", "run id", "status",
                     "reason"],
            tablefmt="github"))
        out.append("")
    return "\n".join(out)


def render_model_page(model: str, rows: list[dict[str, Any]], class_names: dict[str, list[str]]
                      ) -> str:
    """Per-class IoU change of every method against the baseline, worst classes called out."""
    out = [f"# {model}: per-class IoU change against the baseline", "",
           "Points of IoU, mean over seeds, paired with the baseline of the same seed. "
           "Small objects usually suffer first; the three classes hurt most are listed.", ""]
    for r in rows:
        if r["method"] == "none" or not r["per_class_delta"]:
            continue
        names = class_names.get(r["dataset"]) or [str(i) for i in range(len(r["per_class_delta"]))]
        pairs = [(n, d) for n, d in zip(names, r["per_class_delta"]) if d is not None]
        worst = sorted(pairs, key=lambda p: p[1])[:3]
        out += [f"## {r['method']} {r['config']} ({r['dataset']}, {r['budget']}, "
                f"{r['seeds']} seed{'s' if r['seeds'] > 1 else ''})", "",
                "hurt most: " + ", ".join(f"{n} ({100 * d:+.1f})" for n, d in worst), "",
                tabulate([[n, f"{100 * d:+.1f}"] for n, d in pairs],
                         headers=["class", "ΔIoU"], tablefmt="github"), ""]
    return "\n".join(out)


def render_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def render_leaderboard(results: Path, malformed: list[Path] | None = None
                       ) -> dict[str, str]:
    """Every file the leaderboard writes, by path relative to `results`, rendered from the
    run records alone: `verify --reference` compares these with the committed files."""
    from bench.data import DATASETS

    rows, failed = build_rows(results, malformed)
    csv_rows = [{k: v for k, v in r.items() if k not in ("per_class_delta", "deploy")}
                for r in rows]
    out = {"leaderboard.md": render_markdown(rows, failed),
           "leaderboard.csv": render_csv(csv_rows)}
    names = {n: list(DATASETS.get(n).class_names) for n in DATASETS.names()}
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    for model, rs in by_model.items():
        out[f"models/{model}.md"] = render_model_page(model, rs, names)
    return out


def write_leaderboard(results: Path, malformed: list[Path] | None = None
                      ) -> tuple[Path, Path]:
    """Write every leaderboard file; records failing the schema are appended to
    `malformed` (and named on stderr)."""
    for rel, text in render_leaderboard(results, malformed).items():
        atomic_write_text(Path(results) / rel, text)
    return Path(results) / "leaderboard.md", Path(results) / "leaderboard.csv"
