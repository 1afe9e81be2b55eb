#!/usr/bin/env python3
"""Reads the load client's JSON reports that scripts/bench-peers collected.

  report.py statuses FILE     "200=5 401=3" for one report
  report.py summary FILE      one line: req/s, p99, requests per server CPU-second
  report.py report RAW OUT    results.csv, results.json and peers.png in OUT, from RAW
                              (the reports, checks.tsv and meta.tsv); prints the table

Only `report` needs matplotlib (for the plot).
"""

import csv
import json
import re
import sys
from pathlib import Path

# Plot and table order, with the names a reader knows them by.
SERVERS = {
    "bare": "bare (no auth)",
    "stack": "this crate's Server, no layer",
    "stack-layer": "this crate's Server + layer",
    "ours": "mtls-bound-token",
    "ours-no-cache": "mtls-bound-token, no token cache",
    "handwritten": "hand-written",
    "jwt_authorizer": "jwt-authorizer",
    "huskarl": "huskarl",
}
# What each server's design leaves out, beside what the checks observe.
DESIGN_SKIPS = {
    "handwritten": "typ, nbf, kid",
    "jwt_authorizer": "typ, nbf",
}
CHECKS = {
    "stolen": "token bound to another certificate accepted",
    "refused": "expired, junk or missing token accepted",
}


def statuses(report):
    text = " ".join(f"{s}={n}" for s, n in sorted(report["by_status"].items())) or "none"
    if report["errors"]:
        text += f" errors={report['errors']}"
    return text


def summary(report):
    per_cpu = report["requests_per_server_cpu_second"] or 0
    return (
        f"{report['requests_per_second']:.0f} req/s, p99 {report['latency_us']['p99']} us, "
        f"{per_cpu:.0f} req per server CPU-s"
    )


def read_checks(raw):
    checks = {}
    with open(raw / "checks.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            checks.setdefault(row["server"], []).append(row)
    return checks


def read_meta(raw):
    meta = {}
    with open(raw / "meta.tsv") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            meta[key] = int(value) if value.isdigit() else value
    if "concurrency" in meta:
        meta["concurrency"] = [int(c) for c in str(meta["concurrency"]).split()]
    return meta


def skips_of(server, checks):
    skipped = [CHECKS[c["check"]] for c in checks.get(server, []) if c["verdict"] == "skips"]
    if server == "bare":
        return "all authentication"
    design = DESIGN_SKIPS.get(server)
    return "; ".join(skipped + ([f"does not check {design}"] if design else []))


RUN = re.compile(r"^(?P<server>.+)-(?P<mode>keepalive|handshake)-(?P<connections>\d+)-r\d+$")


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def rows_of(raw, checks):
    runs = {}
    for path in sorted(raw.glob("*.json")):
        match = RUN.match(path.stem)
        if match:
            key = (match["server"], match["mode"], int(match["connections"]))
            runs.setdefault(key, []).append(json.loads(path.read_text()))
    rows = []
    for (server, mode, connections), reports in runs.items():
        # Over rounds, the median of each figure.
        def of(figure):
            return median([figure(r) for r in reports])

        cpu = of(lambda r: r["server_cpu_seconds"])
        per_request = of(lambda r: 1e6 * r["server_cpu_seconds"] / r["requests"]
                         if r["server_cpu_seconds"] and r["requests"] else None)
        rows.append({
            "server": server,
            "mode": mode,
            "connections": connections,
            "rounds": len(reports),
            "requests": of(lambda r: r["requests"]),
            "seconds": round(of(lambda r: r["seconds"]), 3),
            "req_per_s": round(of(lambda r: r["requests_per_second"]), 1),
            "p50_us": of(lambda r: r["latency_us"]["p50"]),
            "p99_us": of(lambda r: r["latency_us"]["p99"]),
            "max_us": of(lambda r: r["latency_us"]["max"]),
            "server_cpu_s": round(cpu, 2) if cpu is not None else None,
            "req_per_server_cpu_s": round(of(lambda r: r["requests_per_server_cpu_second"]) or 0, 1),
            "server_cpu_us_per_req": round(per_request, 1) if per_request else None,
            "non_200": sum(n for r in reports for s, n in r["by_status"].items() if s != "200"),
            "errors": sum(r["errors"] for r in reports),
            "skips": skips_of(server, checks),
        })
    # Within the run: per server CPU-second against bare at the same mode and connections,
    # and the server CPU a request costs above bare's.
    bare = {(r["mode"], r["connections"]): r for r in rows if r["server"] == "bare"}
    for r in rows:
        floor = bare.get((r["mode"], r["connections"]))
        ok = floor and floor["req_per_server_cpu_s"] and r["server_cpu_us_per_req"]
        r["ratio_to_bare"] = (
            round(r["req_per_server_cpu_s"] / floor["req_per_server_cpu_s"], 3) if ok else None
        )
        r["extra_cpu_us_per_req"] = (
            round(r["server_cpu_us_per_req"] - floor["server_cpu_us_per_req"], 1)
            if ok and floor["server_cpu_us_per_req"] else None
        )
    order = list(SERVERS)
    rows.sort(key=lambda r: (r["mode"] != "keepalive", order.index(r["server"])
                             if r["server"] in order else 99, r["connections"]))
    return rows


def table(rows):
    lines = [
        "| server | mode | conns | req/s | p50 µs | p99 µs | server CPU s | req / server CPU-s "
        "| ratio to bare | extra CPU µs/req |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio_to_bare']:.2f}" if r["ratio_to_bare"] is not None else "–"
        extra = f"{r['extra_cpu_us_per_req']:.1f}" if r["extra_cpu_us_per_req"] is not None else "–"
        mode = "keep-alive" if r["mode"] == "keepalive" else "new conn/request"
        lines.append(
            f"| {SERVERS.get(r['server'], r['server'])} | {mode} | {r['connections']} "
            f"| {r['req_per_s']:.0f} | {r['p50_us']} | {r['p99_us']} | {r['server_cpu_s']} "
            f"| {r['req_per_server_cpu_s']:.0f} | {ratio} | {extra} |"
        )
    return "\n".join(lines)


def plot(rows, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (per_cpu, p99) = plt.subplots(1, 2, figsize=(12, 4.8))
    for server, label in SERVERS.items():
        points = sorted(
            (r for r in rows if r["server"] == server and r["mode"] == "keepalive"),
            key=lambda r: r["connections"],
        )
        if not points:
            continue
        x = [r["connections"] for r in points]
        style = {"marker": "o", "label": label, "linestyle": "--" if server == "bare" else "-"}
        per_cpu.plot(x, [r["req_per_server_cpu_s"] for r in points], **style)
        p99.plot(x, [r["p99_us"] / 1000 for r in points], **style)
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    # On a log axis, label the minor ticks 2, 3 and 5 of each decade only.
    sparse = matplotlib.ticker.FuncFormatter(
        lambda value, _: f"{value:g}" if f"{value:e}"[0] in "235" else "")
    for ax in (per_cpu, p99):
        ax.set_xscale("log", base=2)
        ax.set_xticks(keepalive_connections(rows))
        ax.xaxis.set_major_formatter(plain)
        ax.set_xlabel("keep-alive mTLS connections")
        ax.grid(True, alpha=0.3)
    per_cpu.set_ylabel("requests per server CPU-second")
    per_cpu.set_yscale("log")
    per_cpu.yaxis.set_major_formatter(plain)
    per_cpu.yaxis.set_minor_formatter(sparse)
    per_cpu.set_title("Throughput per server CPU-second (higher is better)")
    p99.set_ylabel("p99 latency (ms)")
    p99.set_yscale("log")
    p99.yaxis.set_major_formatter(plain)
    p99.yaxis.set_minor_formatter(sparse)
    p99.set_title("p99 latency (lower is better)")
    per_cpu.legend(fontsize=8)
    fig.suptitle(
        f"GET /whoami over mTLS, server on 1 CPU, {meta.get('duration_s')} s per point, "
        f"{meta.get('distinct_tokens')} distinct token(s), median of {meta.get('rounds')} round(s); "
        f"{meta.get('cpu', '')}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def keepalive_connections(rows):
    return sorted({r["connections"] for r in rows if r["mode"] == "keepalive"})


def report(raw, out):
    checks = read_checks(raw)
    meta = read_meta(raw)
    rows = rows_of(raw, checks)
    fields = list(rows[0].keys()) if rows else []
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "checks": checks, "rows": rows}, indent=2) + "\n")
    plot(rows, meta, out / "peers.png")
    print(table(rows))
    print()
    for server in SERVERS:
        if server in checks:
            print(f"{SERVERS[server]}: "
                  + "; ".join(f"{c['check']} {c['statuses']} ({c['verdict']})" for c in checks[server])
                  + (f"; skips: {skips_of(server, checks)}" if skips_of(server, checks) else ""))
    print(f"\nwrote {out}/results.csv, results.json, peers.png")


def main(argv):
    if len(argv) == 3 and argv[1] == "statuses":
        print(statuses(json.loads(Path(argv[2]).read_text())))
    elif len(argv) == 3 and argv[1] == "summary":
        print(summary(json.loads(Path(argv[2]).read_text())))
    elif len(argv) == 4 and argv[1] == "report":
        report(Path(argv[2]), Path(argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
