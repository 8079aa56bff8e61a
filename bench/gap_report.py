"""The report side of bench/gap.py: the table of runs, the ratios of the gaps, the chart."""

METHODS = ("online", "pgbouncer", "standby", "pg_upgrade", "dump_restore")
LABELS = dict(online="online (replication + switchover)", pgbouncer="online through PgBouncer (paused)",
              standby="online, with a hot standby",
              pg_upgrade="pg_upgrade --link", dump_restore="dump/restore")


# -- report (pure, unit-tested) -------------------------------------------------------------------
def ratios(results):
    """{scenario: pg_upgrade gap / online gap} for scenarios where both ran."""
    gaps = {}
    for r in results:
        gaps.setdefault(r["scenario"], {})[r["method"]] = r.get("gap_s") if r.get("ok") else None
    out = {}
    for scenario, by_method in gaps.items():
        online, inplace = by_method.get("online"), by_method.get("pg_upgrade")
        if online and inplace is not None:
            out[scenario] = round(inplace / online, 1)
    return out


def format_table(results):
    """Text table: one line per run, then the pg_upgrade/online ratios."""
    header = ("scenario", "size MB", "method", "gap s", "lost", "acked", "failed", "copy s", "window s", "ok")
    lines = [header]
    for r in results:
        lines.append((r["scenario"], "%.0f" % r.get("size_mb", 0), r["method"],
                      _num(r.get("gap_s"), 3), _num(r.get("lost"), 0), _num(r.get("acknowledged"), 0),
                      _num(r.get("failed_attempts"), 0), _copy(r), _num(r.get("window_s"), 3),
                      "yes" if r.get("ok") else "NO" + (" (%s)" % r["error"].splitlines()[0][-60:] if r.get("error") else "")))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    for scenario, ratio in ratios(results).items():
        text.append("%s: pg_upgrade --link gap / online gap = %.1fx" % (scenario, ratio))
    text += standby_lines(results)
    return "\n".join(text)


def standby_lines(results):
    """Per run with a standby: the read pause on it beside the write gap, and the write gap without a standby."""
    alone = dict((r["scenario"], r.get("gap_s")) for r in results if r["method"] == "online")
    return ["%s: with a standby, read pause %s s on it (%s values read, %s went back), write gap %s s (without a "
            "standby: %s s)" % (r["scenario"], _num(r.get("read_pause_s"), 3), _num(r.get("reads"), 0),
                                _num(r.get("reads_backwards"), 0), _num(r.get("gap_s"), 3),
                                _num(alone.get(r["scenario"]), 3))
            for r in results if r["method"] == "standby"]


def markdown_table(results):
    rows = ["| scenario | size | method | longest write gap | lost | acknowledged | failed attempts | copy | "
            "server-side window |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append("| %s | %.0f MB | %s | %s s | %s | %s | %s | %s | %s |" % (
            r["scenario"], r.get("size_mb", 0), LABELS.get(r["method"], r["method"]), _num(r.get("gap_s"), 3),
            _num(r.get("lost"), 0), _num(r.get("acknowledged"), 0), _num(r.get("failed_attempts"), 0),
            _copy(r, " s"), _num(r.get("window_s"), 3) + " s" if r.get("window_s") is not None else "-"))
    return "\n".join(rows)


def _copy(r, unit=""):
    """Seconds of the initial copy, and its method where it is not the role's default (logical)."""
    text = _num(r.get("copy_s"), 1) + (unit if r.get("copy_s") is not None else "")
    return text + " (physical)" if r.get("copy_method") == "physical" else text


def _num(value, digits):
    if value is None:
        return "-"
    return "%.*f" % (digits, value) if digits else "%d" % value


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r["scenario"] for r in results))
    methods = [m for m in METHODS if any(r["method"] == m for r in results)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        gaps = [next((r.get("gap_s") or 0 for r in results if r["scenario"] == n and r["method"] == method), 0)
                for n in names]
        bars = ax.bar([x + i * width for x in range(len(names))], gaps, width, label=LABELS[method])
        ax.bar_label(bars, labels=["%.2f s" % g for g in gaps], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("longest client-visible write gap (s, log scale)")
    ax.set_xticks([x + width * (len(methods) - 1) / 2 for x in range(len(names))])
    ax.set_xticklabels(["%s\n(%.0f MB)" % (n, next(r.get("size_mb", 0) for r in results if r["scenario"] == n))
                        for n in names])
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_title("PostgreSQL 16 -> 18 with 4 writers at full speed: longest write gap")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
