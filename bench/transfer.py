#!/usr/bin/env python3
"""Runs the transfer bench binary for each case and transport against a running control
plane, samples the control plane's CPU time and peak RSS around each run, and prints a
markdown table of the medians. bench/transfer.sh sets everything up and calls this;
standard library only."""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from procstat import cpu_seconds, status_mib

TRANSPORTS = ("quic", "http")


def parse_args():
    """The flags bench/transfer.sh passes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench-bin", required=True, help="the transfer bench executable")
    parser.add_argument("--large-node-config", required=True,
                        help="node.toml (`edgewise device add`) of a device assigned the large bundle")
    parser.add_argument("--small-node-config", required=True,
                        help="node.toml (`edgewise device add`) of a device assigned the small bundle")
    parser.add_argument("--pid", type=int, required=True, help="the control plane's process id")
    parser.add_argument("--large", required=True, help="`edgewise --json model push` output, large bundle")
    parser.add_argument("--small", required=True, help="`edgewise --json model push` output, small bundle")
    parser.add_argument("--copies", type=int, default=1000, help="concurrent downloads of the small bundle")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one run may take")
    parser.add_argument("--out", required=True, help="folder for the downloads")
    parser.add_argument("--summary", required=True, help="where to write the JSON summary")
    return parser.parse_args()


def pushed(path):
    """sha256 and size of a pushed bundle, from the push command's JSON."""
    with open(path, encoding="utf-8") as file:
        version = json.load(file)
    return version["bundle_sha256"], int(version["size"])


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as file:
            file.write("5")
        return True
    except OSError:
        return False


def children_cpu():
    """CPU seconds used so far by waited-for child processes (the bench binary)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(args, node_config, transport, sha256, size, copies):
    """One bench run; its JSON report plus the control plane's and the client's costs."""
    if not os.path.exists(f"/proc/{args.pid}"):
        sys.exit(f"the control plane (pid {args.pid}) is gone; see its log")
    command = [args.bench_bin, "--node-config", node_config, "--sha256", sha256,
               "--size", str(size), "--transport", transport, "--copies", str(copies),
               "--out", args.out]
    hwm_reset = reset_peak_rss(args.pid)
    cpu_before = cpu_seconds(args.pid)
    client_before = children_cpu()
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        report = json.loads(lines[-1]) if done.returncode == 0 and lines else None
        problem = None if report else f"exit {done.returncode}: {done.stderr.strip()[-500:]}"
    except subprocess.TimeoutExpired:
        report, problem = None, f"timed out after {args.timeout} s"
    wall = time.monotonic() - started
    if report is None:
        report = {"transport": transport, "copies": copies, "size": size, "bytes": 0,
                  "seconds": wall, "mb_per_s": 0.0, "p50_s": None, "p99_s": None, "max_s": None,
                  "failures": copies, "errors": [{"count": copies, "error": problem}]}
    report["server_cpu_s"] = cpu_seconds(args.pid) - cpu_before
    report["server_peak_rss_mib"] = status_mib(args.pid, "VmHWM")
    report["server_peak_rss_reset"] = hwm_reset
    report["client_cpu_s"] = children_cpu() - client_before
    return report


def median(runs, key):
    """Median of one field over the runs that have it."""
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    """A number for the table, or a dash."""
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b):
    """a / b, or None."""
    return a / b if a is not None and b else None


def main():
    """Runs every case REPEAT times, interleaving the transports, and reports."""
    args = parse_args()
    cases = []
    for label, path, node_config, copies in (
            ("large", args.large, args.large_node_config, 1),
            ("small", args.small, args.small_node_config, args.copies)):
        sha256, size = pushed(path)
        cases.append({"case": f"{size / 1e6:.1f} MB x{copies}", "name": label, "sha256": sha256,
                      "size": size, "copies": copies, "node_config": node_config,
                      "runs": {t: [] for t in TRANSPORTS}})
    os.makedirs(args.out, exist_ok=True)
    for round_ in range(args.repeat):
        for case in cases:
            # Alternate which transport goes first, so neither always follows the other.
            order = TRANSPORTS if round_ % 2 == 0 else TRANSPORTS[::-1]
            for transport in order:
                report = run_once(args, case["node_config"], transport, case["sha256"], case["size"],
                                  case["copies"])
                case["runs"][transport].append(report)
                print(f"run {round_ + 1}/{args.repeat} {case['case']} {transport}: "
                      f"{fmt(report['mb_per_s'], 1)} MB/s, {fmt(report['seconds'])} s, "
                      f"{report['failures']} failed", file=sys.stderr, flush=True)
                for error in report.get("errors", []):
                    print(f"  {error['count']}x {error['error']}", file=sys.stderr)

    keys = ("mb_per_s", "seconds", "p50_s", "p99_s", "max_s", "server_cpu_s",
            "server_peak_rss_mib", "client_cpu_s")
    for case in cases:
        case["median"] = {}
        for transport in TRANSPORTS:
            runs = case["runs"][transport]
            summary = {key: median(runs, key) for key in keys}
            summary["failures"] = sum(run["failures"] for run in runs)
            case["median"][transport] = summary

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            cpu = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    machine = f"{os.cpu_count()} cores, {cpu}, Linux {platform.release()}"
    print(f"machine: {machine}; client and control plane on 127.0.0.1; "
          f"median of {args.repeat} runs; MB = 10^6 bytes; CP = the control plane process")
    print()
    print("| case | transport | MB/s | total s | p50 s | p99 s | failures (all runs) "
          "| CP CPU s | CP peak RSS MiB | client CPU s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        for transport in TRANSPORTS:
            m = case["median"][transport]
            print(f"| {case['case']} | {transport.upper()} | {fmt(m['mb_per_s'], 1)} | {fmt(m['seconds'])} "
                  f"| {fmt(m['p50_s'], 3)} | {fmt(m['p99_s'], 3)} | {m['failures']} "
                  f"| {fmt(m['server_cpu_s'])} | {fmt(m['server_peak_rss_mib'], 1)} "
                  f"| {fmt(m['client_cpu_s'])} |")
    print()
    print("| case | QUIC/HTTP MB/s | QUIC/HTTP p99 | QUIC/HTTP CP CPU s |")
    print("|---|---:|---:|---:|")
    for case in cases:
        quic, http = case["median"]["quic"], case["median"]["http"]
        case["quic_over_http"] = {key: ratio(quic[key], http[key])
                                  for key in ("mb_per_s", "p99_s", "server_cpu_s")}
        r = case["quic_over_http"]
        print(f"| {case['case']} | {fmt(r['mb_per_s'])}x | {fmt(r['p99_s'])}x | {fmt(r['server_cpu_s'])}x |")
    if not all(run["server_peak_rss_reset"] for case in cases for t in TRANSPORTS for run in case["runs"][t]):
        print("\nnote: VmHWM could not be reset between runs; peak RSS is the control plane's lifetime peak")

    with open(args.summary, "w", encoding="utf-8") as file:
        json.dump({"machine": machine, "repeat": args.repeat, "cases": cases}, file, indent=2)
        file.write("\n")
    print(f"\nsummary: {args.summary}")


if __name__ == "__main__":
    main()
