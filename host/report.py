"""The search's report: report.json, report.md, pareto.png and pareto.svg."""

from __future__ import annotations

import json
from pathlib import Path

from netcut.policy import DEFAULT_POLICY, DEFAULT_POLICY_WHY, Candidate

from .search import SearchConfig, SearchOutcome


def accuracy_interval(accuracy: float, images: int, confidence: float = 0.95) -> tuple[float, float]:
    """The binomial (Wilson) interval of an accuracy measured on `images` images."""
    from scipy.stats import binomtest

    ci = binomtest(round(accuracy * images), images).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def held_out_words(c: dict) -> str:
    """', test accuracy 91.2% (95% interval 87.8-93.9%, 359 images nothing chose on)', or nothing."""
    if c.get("test_accuracy") is None:
        return ""
    low, high = c["test_interval_95"]
    return (
        f", test accuracy {c['test_accuracy']:.1%} (95% interval {low:.1%}-{high:.1%}, "
        f"{c['test_images']} held-out images nothing was trained or chosen on)"
    )


def report_dict(cfg: SearchConfig, outcome: SearchOutcome) -> dict:
    images = outcome.task.get("test")

    def brief(c: Candidate | None) -> dict | None:
        if c is None:
            return None
        tested = c.test_accuracy is not None and images
        return {
            "model": c.model,
            "cut": c.cut,
            "precision": c.precision,
            "float_accuracy": c.float_accuracy,
            "estimated_ms": c.estimated_ms,
            "measured_ms": c.measured_ms,
            "accuracy": c.accuracy,
            "test_accuracy": c.test_accuracy,
            "test_images": images if tested else None,
            "test_interval_95": accuracy_interval(c.test_accuracy, images) if tested else None,
        }

    keys = (
        "key",
        "model",
        "cut",
        "macs",
        "params",
        "estimated_ms",
        "uncertainty_ms",
        "margin_ms",
        "evidence",
        "measured_ms",
        "accuracy",
        "feasible",
        "retrained",
        "off_the_shelf",
        "confirmation",
        "precision",
        "float_accuracy",
        "excluded",
    )
    return {
        "deadline_ms": outcome.deadline.ms,
        "deadline_source": outcome.deadline.source,
        "quantile": cfg.quantile,
        "estimator": cfg.estimator,
        "policy": str(cfg.policy),
        "policy_why": DEFAULT_POLICY_WHY[cfg.finetune]
        if str(cfg.policy) == DEFAULT_POLICY[cfg.finetune]
        else f"chosen with --policy (the default with {cfg.finetune} fine-tuning is {DEFAULT_POLICY[cfg.finetune]})",
        "finetune": cfg.finetune,
        "epochs": cfg.epochs,
        "margin_pct": cfg.margin_pct,
        "input_size": cfg.input_size,
        "weights": cfg.weights,
        "precisions": list(cfg.precisions),
        "target": outcome.target,
        "task": outcome.task,
        "pick": brief(outcome.pick),
        "best_off_the_shelf": brief(outcome.best_off_the_shelf),
        "artefact": str(outcome.artefact) if outcome.artefact else None,
        "sidecar": outcome.sidecar,
        "phases_s": {k: round(v, 2) for k, v in outcome.phases_s.items()},
        "notes": outcome.notes,
        "candidates": [{k: c.report()[k] for k in keys} for c in outcome.candidates],
    }


def why_out(c: dict, deadline_ms: float) -> str:
    """Why a candidate is not feasible, in the words of the report's table."""
    if c["confirmation"] and c["confirmation"].startswith("missed"):
        return c["confirmation"]
    if c.get("excluded"):
        return f"left out: {c['excluded']}"
    if c["estimated_ms"] is None:
        return "no: not estimated (see the notes)"
    return f"no: {c['estimated_ms']:.3f} + {c['margin_ms'] or 0:.3f} margin > {deadline_ms:g}"


def feasible_words(c: dict, deadline_ms: float) -> str:
    if not c["feasible"]:
        return why_out(c, deadline_ms)
    return f"yes; {c['excluded']}" if c.get("excluded") else "yes"


def write_markdown(path: Path, data: dict) -> None:
    pick, off = data["pick"], data["best_off_the_shelf"]
    t = data["target"]
    lines = [f"# NetCut search: {t['name']}, deadline {data['deadline_ms']:g} ms at {data['quantile']}", ""]
    if not pick:
        lines.append(
            f"**No candidate meets {data['deadline_ms']:g} ms at {data['quantile']}**: the table below gives "
            "each one's estimate, its margin, and why it is out."
        )
    if pick:
        lines.append(
            f"**Pick: {pick['model']} {'cut after ' + pick['cut'] if pick['cut'] else '(full network)'}, "
            f"{pick['precision']}** — {pick['measured_ms']:.3f} ms {data['quantile']} measured on {t['name']}, "
            f"validation accuracy {pick['accuracy']:.1%}{held_out_words(pick)}."
        )
        if pick["precision"] != "fp32" and pick["float_accuracy"] is not None:
            cost = pick["float_accuracy"] - pick["accuracy"]
            what = (
                f"cost the pick {cost * 100:.1f} points of validation accuracy"
                if cost > 0
                else f"cost the pick nothing (it moved validation accuracy by +{-cost * 100:.1f} points)"
            )
            lines.append(
                f"{'Quantization' if pick['precision'] == 'int8' else 'Conversion to ' + pick['precision']} {what}: "
                f"{pick['float_accuracy']:.1%} as the float TRN, {pick['accuracy']:.1%} as {pick['precision']} in the "
                "runtime."
            )
    if off:
        lat = off["measured_ms"] if off["measured_ms"] is not None else off["estimated_ms"]
        lines.append(
            f"Best off-the-shelf network within the deadline: {off['model']} ({off['precision']}), {lat:.3f} ms, "
            f"validation accuracy {off['accuracy']:.1%}{held_out_words(off)}."
        )
    machine = " ".join(p for p in (t.get("board_model"), t.get("cpu_model")) if p) or "unknown machine"
    threads = t.get("threads")
    lines += [
        "",
        f"Target: {machine}, {t.get('runtime')} {t.get('runtime_version')}, "
        f"{threads} thread{'' if threads == 1 else 's'} (identity {t['identity']}).",
        f"Task: {data['task']['source']}, {len(data['task']['classes'])} classes, "
        f"{data['task'].get('train', '?')} training / {data['task'].get('val', '?')} validation / "
        f"{data['task'].get('test', 0)} test images.",
        f"Estimator: {data['estimator']} (margin {data['margin_pct']:g}%), policy {data['policy']} "
        f"({data['policy_why']}), fine-tuning {data['finetune']}.",
        "Time per phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in data["phases_s"].items()) + ".",
        "",
    ]
    for note in data["notes"]:
        lines.append(f"- {note}")
    lines += [
        "",
        "| model | cut | precision | MMACs | estimated ms | margin ms | measured ms | validation accuracy "
        "| feasible | retrained |",
        "|---|---|---|---:|---:|---:|---:|---:|:-:|:-:|",
    ]
    for c in data["candidates"]:
        fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
        lines.append(
            f"| {c['model']} | {c['cut'] or '(full)'} | {c['precision']} | {c['macs'] / 1e6:.1f} "
            f"| {fmt(c['estimated_ms'], '.3f')} "
            f"| {fmt(c['margin_ms'], '.3f')} | {fmt(c['measured_ms'], '.3f')} | {fmt(c['accuracy'], '.3f')} "
            f"| {feasible_words(c, data['deadline_ms'])} | {'yes' if c['retrained'] else ''} |"
        )
    lines += ["", "![latency vs accuracy](pareto.png)", ""]
    evidence = [c for c in data["candidates"] if c.get("evidence")]
    if evidence:
        # What each estimate rests on: the rows it was read from, or the fit and the kernels that dominate it
        # with how many measured kernels of their kind stand behind them.
        lines += ["## What each estimate rests on", ""]
        lines += [f"- {c['key']}: {c['evidence']}" for c in evidence]
        lines.append("")
    path.write_text("\n".join(lines))


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other beats on both latency and accuracy, latency ascending."""
    front, best = [], -1.0
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot_series(outcome: SearchOutcome) -> dict:
    """What pareto.png draws, as data: every candidate at its estimated latency (trained ones at their
    validation accuracy, untrained ones as ticks along the axis), measured latencies apart, and the
    off-the-shelf and trimmed frontiers (on estimated latency, the axis every candidate shares)."""
    known = [c for c in outcome.candidates if c.estimated_ms is not None]
    trained = [c for c in known if c.accuracy is not None]
    series = {
        "off-the-shelf": [(c.estimated_ms, c.accuracy, c.key) for c in trained if c.off_the_shelf],
        "trimmed (TRN)": [(c.estimated_ms, c.accuracy, c.key) for c in trained if not c.off_the_shelf],
        "untrained": [(c.estimated_ms, c.key) for c in known if c.accuracy is None],
        "measured": [(c.estimated_ms, c.measured_ms, c.accuracy, c.key) for c in trained if c.measured_ms is not None],
    }
    series["off-the-shelf frontier"] = _front([(x, y) for x, y, _ in series["off-the-shelf"]])
    series["TRN frontier"] = _front([(x, y) for x, y, _ in series["trimmed (TRN)"]])
    # Precisions: which points are int8 or fp16 (drawn with their own markers), and the frontier with float
    # only beside the one with every precision, so the plot shows what they add.
    for precision in CONVERTED:
        series[precision] = sorted(c.key for c in trained if c.precision == precision)
    if any(series[p] for p in CONVERTED):
        series["float-only frontier"] = _front([(c.estimated_ms, c.accuracy) for c in trained if c.precision == "fp32"])
        series["mixed frontier"] = _front([(c.estimated_ms, c.accuracy) for c in trained])
    return series


CONVERTED = ("int8", "fp16")
# (off-the-shelf, trimmed) marker and colour of each converted precision's points.
MARKERS = {"int8": (("D", "tab:purple"), ("^", "tab:green")), "fp16": (("P", "tab:brown"), ("v", "tab:red"))}


def write_plots(out: Path, cfg: SearchConfig, outcome: SearchOutcome) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = plot_series(outcome)
    fig, ax = plt.subplots(figsize=(10, 5))
    precision_of = {key: p for p in CONVERTED for key in s[p]}
    converted = set(precision_of)
    for name, marker, colour in (("off-the-shelf", "s", "tab:blue"), ("trimmed (TRN)", "o", "tab:orange")):
        for precision in ("fp32", *CONVERTED):
            shape, tint = (marker, colour) if precision == "fp32" else MARKERS[precision][marker == "o"]
            points = [p for p in s[name] if precision_of.get(p[2], "fp32") == precision]
            if points:  # a legend entry only for what is drawn
                label = f"{name}, {precision}" if converted else name
                ax.scatter(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker=shape,
                    s=40,
                    alpha=0.85,
                    color=tint,
                    label=label,
                )
    frontiers = (
        (("float-only frontier", "tab:grey", "--"), ("mixed frontier", "tab:green", "-"))
        if converted
        else (("off-the-shelf frontier", "tab:blue", "-"), ("TRN frontier", "tab:orange", "-"))
    )
    for name, colour, style in frontiers:
        if len(s[name]) > 1:
            ax.step(*zip(*s[name]), where="post", color=colour, linestyle=style, linewidth=1, alpha=0.7, label=name)
    if s["untrained"]:
        # Along the bottom of the plot: estimated, never trained, so no accuracy to place them at.
        ax.plot(
            [p[0] for p in s["untrained"]],
            [0.01] * len(s["untrained"]),
            "|",
            color="grey",
            markersize=12,
            transform=ax.get_xaxis_transform(),
            label="not trained (estimated latency)",
        )
    if s["measured"]:
        for est, meas, acc, _ in s["measured"]:
            ax.plot([est, meas], [acc, acc], color="black", linewidth=0.6, alpha=0.5)
        ax.scatter(
            [p[1] for p in s["measured"]],
            [p[2] for p in s["measured"]],
            facecolors="none",
            edgecolors="black",
            s=60,
            label="measured on the board",
        )
    ax.axvline(outcome.deadline.ms, color="red", linestyle="--", label=f"deadline {outcome.deadline.ms:g} ms")
    if outcome.pick and outcome.pick.measured_ms is not None:
        ax.scatter(
            [outcome.pick.measured_ms],
            [outcome.pick.accuracy],
            marker="*",
            s=300,
            color="gold",
            edgecolor="black",
            zorder=5,
            label=f"pick: {outcome.pick.key} (measured)",
        )
    on_a_front = set(s["off-the-shelf frontier"]) | set(s["TRN frontier"]) | set(s.get("mixed frontier", []))
    for x, y, key in s["off-the-shelf"] + s["trimmed (TRN)"]:
        if (x, y) in on_a_front:  # names where they matter; every point is in report.md's table
            ax.annotate(key, (x, y), fontsize=6, alpha=0.8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"estimated latency at {cfg.quantile} on {outcome.target['name']} (ms); hollow: measured")
    ax.set_ylabel("validation accuracy")
    ax.set_title("NetCut: latency vs accuracy of every candidate")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside the plot
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    fig.savefig(out / "pareto.svg")
    plt.close(fig)


def write_report(cfg: SearchConfig, outcome: SearchOutcome) -> dict:
    out = Path(cfg.out)
    data = report_dict(cfg, outcome)
    (out / "report.json").write_text(json.dumps(data, indent=1))
    write_markdown(out / "report.md", data)
    write_plots(out, cfg, outcome)
    return data
