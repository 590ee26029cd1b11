#!/usr/bin/env python3
"""Fleet-scale benchmark: N simulated nodes against one control plane on this machine.

For each fleet size it starts a fresh control plane (embedded broker, QUIC artifact
server), starts the nodes with `edgewise-runtime simulate` (one process per 2,500 nodes:
each node holds an MQTT connection, and a QUIC socket and a file while it downloads,
which must fit the process's file limit), deploys a small v1 to the whole group, lets
telemetry settle, measures the steady state, and then starts a one-stage rollout of v2
(both bundles about 1 MB) and measures the time until every node has applied it.

Measured per fleet size:
- setup: time to register and connect every node;
- deploy: time for the initial direct deployment of v1 to reach every node;
- rollout: time from rollout start to every node on v2 (the control plane's own
  `settled_at` minus `started_at`, whole seconds, and as seen by this script);
- the control plane's CPU (share of one core) and memory (RSS, peak), in the steady
  state and during the rollout;
- telemetry windows stored per second, and messages published to the broker per
  second by topic, in the steady state and during the rollout;
- the simulators' CPU and memory, since they share the machine.

Standard library only. bench/fleet.sh builds the binaries and the bundles and calls this.
"""

import argparse
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from procstat import cpu_seconds, free_port, status_mib

NODES_PER_SIMULATOR = 2500


# The control plane's admin API token, read from its data folder once it is ready.
TOKEN = None


def api(base, path, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if TOKEN:
        headers["authorization"] = f"Bearer {TOKEN}"
    request = urllib.request.Request(
        base + path,
        data=data,
        method="GET" if body is None else "POST",
        headers=headers,
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def scrape(base):
    """The control plane's Prometheus metrics: {name: {labels: value}}."""
    with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if match:
            name, labels, value = match.group(1), match.group(2) or "", match.group(3)
            values.setdefault(name, {})[labels] = float(value)
    return values


def total(metrics, name, label_filter=""):
    return sum(v for labels, v in metrics.get(name, {}).items() if label_filter in labels)


def topic_counts(metrics):
    counts = {}
    for labels, value in metrics.get("edgewise_mqtt_messages_received_total", {}).items():
        match = re.search(r'topic="([^"]*)"', labels)
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + value
    return counts


class Usage:
    """CPU seconds and memory of a set of processes, read from /proc."""

    def __init__(self, pids):
        self.pids = list(pids)

    def cpu_seconds(self):
        return sum(cpu_seconds(pid) for pid in self.pids)

    def memory_mib(self, field):
        return sum(status_mib(pid, field) or 0.0 for pid in self.pids)


class Window:
    """What happened between two moments: CPU share, messages and windows per second."""

    def __init__(self, base, control_plane, simulators):
        self.base, self.cp, self.sims = base, control_plane, simulators
        self.started = time.monotonic()
        self.cp_cpu, self.sim_cpu = control_plane.cpu_seconds(), simulators.cpu_seconds()
        self.metrics = scrape(base)
        self.peak_rss = 0.0

    def sample(self):
        self.peak_rss = max(self.peak_rss, self.cp.memory_mib("VmRSS"))

    def close(self):
        elapsed = time.monotonic() - self.started
        now = scrape(self.base)
        before_topics, after_topics = topic_counts(self.metrics), topic_counts(now)
        per_topic = {
            topic: round((after_topics.get(topic, 0) - before_topics.get(topic, 0)) / elapsed, 1)
            for topic in sorted(after_topics)
        }
        windows = total(now, "edgewise_telemetry_windows_ingested_total") - total(
            self.metrics, "edgewise_telemetry_windows_ingested_total"
        )
        served = total(now, "edgewise_artifact_bytes_served_total") - total(
            self.metrics, "edgewise_artifact_bytes_served_total"
        )
        self.sample()
        return {
            "seconds": round(elapsed, 1),
            "control_plane_cpu_percent": round(100 * (self.cp.cpu_seconds() - self.cp_cpu) / elapsed, 1),
            "control_plane_rss_mib": round(self.cp.memory_mib("VmRSS"), 1),
            "control_plane_rss_peak_mib": round(self.peak_rss, 1),
            "simulators_cpu_percent": round(100 * (self.sims.cpu_seconds() - self.sim_cpu) / elapsed, 1),
            "simulators_rss_mib": round(self.sims.memory_mib("VmRSS"), 1),
            "windows_per_second": round(windows / elapsed, 1),
            "broker_messages_per_second": round(sum(per_topic.values()), 1),
            "broker_messages_per_second_by_topic": per_topic,
            "artifact_megabytes_served": round(served / 1e6, 1),
        }


def wait_for(what, check, timeout, on_tick=None, interval=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if on_tick:
            on_tick()
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def run_fleet(args, nodes):
    global TOKEN
    work = os.path.join(args.work, f"fleet-{nodes}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    http, mqtt, quic = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    base = f"http://127.0.0.1:{http}"
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), NO_COLOR="1")
    processes = []
    try:
        cp_log = open(os.path.join(work, "control-plane.log"), "w")
        data_dir = os.path.join(work, "control-plane")
        control_plane = subprocess.Popen(
            [os.path.join(args.bin, "edgewise"), "serve", "--data-dir", data_dir,
             "--trust", args.trust, "--http", f"127.0.0.1:{http}", "--mqtt-listen", f"127.0.0.1:{mqtt}",
             "--quic", f"127.0.0.1:{quic}"],
            stdout=cp_log, stderr=subprocess.STDOUT, env=env)
        processes.append(control_plane)

        def ready():
            try:
                return api(base, "/api/v1/health", timeout=5) is not None
            except (OSError, urllib.error.URLError):
                return False

        wait_for("the control plane", ready, 60, interval=0.2)
        # The first start writes an admin token before it answers; the API calls below,
        # the CLI and the simulators all use it.
        with open(os.path.join(data_dir, "secrets", "admin-token"), encoding="ascii") as file:
            TOKEN = file.read().strip()
        env["EDGEWISE_TOKEN"] = TOKEN
        for bundle in (args.v1, args.v2):
            subprocess.run([os.path.join(args.bin, "edgewise"), "--server", base, "model", "push", bundle],
                           check=True, stdout=subprocess.DEVNULL, env=env)
        cp_usage = Usage([control_plane.pid])

        started = time.monotonic()
        simulator_count = math.ceil(nodes / NODES_PER_SIMULATOR)
        simulators = []
        for index in range(simulator_count):
            count = min(NODES_PER_SIMULATOR, nodes - index * NODES_PER_SIMULATOR)
            log = open(os.path.join(work, f"simulator-{index}.log"), "w")
            simulators.append(subprocess.Popen(
                [os.path.join(args.bin, "edgewise-runtime"), "simulate", "--server", base, "--group", "fleet",
                 "--prefix", f"n{index}", "--count", str(count), "--data-dir", os.path.join(work, f"sim-{index}"),
                 "--data", args.data, "--rate", str(args.rate), "--window", args.window],
                stdout=log, stderr=subprocess.STDOUT, env=env))
        processes.extend(simulators)
        sim_usage = Usage(p.pid for p in simulators)

        def online():
            for process in processes:
                if process.poll() is not None:
                    raise SystemExit(f"a process exited early (status {process.returncode}); logs in {work}")
            return api(base, "/api/v1/groups/fleet")["online"] >= nodes if group_exists() else False

        def group_exists():
            try:
                api(base, "/api/v1/groups/fleet", timeout=30)
                return True
            except urllib.error.HTTPError:
                return False

        wait_for(f"{nodes} nodes online", online, args.timeout, interval=2)
        setup_seconds = time.monotonic() - started
        print(f"  {nodes} nodes online after {setup_seconds:.0f} s", flush=True)

        deploy_started = time.monotonic()
        deployment = api(base, "/api/v1/deployments", {"group": "fleet", "model": "digits", "version": "1"})
        deployment_id = deployment["deployment"]["id"]

        def deployed():
            summary = api(base, f"/api/v1/deployments/{deployment_id}", timeout=60)["summary"]
            return summary.get("applied", 0) + summary.get("failed", 0) >= nodes and summary

        deploy_summary = wait_for("v1 on every node", deployed, args.timeout, interval=2)
        deploy_seconds = time.monotonic() - deploy_started
        print(f"  v1 deployed in {deploy_seconds:.0f} s: {deploy_summary}", flush=True)

        time.sleep(args.settle)
        steady = Window(base, cp_usage, sim_usage)
        for _ in range(int(args.steady)):
            time.sleep(1)
            steady.sample()
        steady_figures = steady.close()
        print(f"  steady: {json.dumps(steady_figures)}", flush=True)

        during = Window(base, cp_usage, sim_usage)
        rollout_started = time.monotonic()
        # The per-device update timeout is the run's own limit: the figure is the time
        # until every node applied, not a count cut short by the 120 s default.
        rollout = api(base, "/api/v1/rollouts", {"group": "fleet", "model": "digits", "version": "2",
                                                 "stages": [100], "bake_seconds": 0,
                                                 "gates": {"update_timeout_seconds": int(args.timeout)}})
        rollout_id = rollout["id"]

        def settled():
            record = api(base, f"/api/v1/rollouts/{rollout_id}", timeout=60)
            return record if record.get("settled_at") is not None or record["state"] != "running" else None

        record = wait_for("the rollout to settle", settled, args.timeout, on_tick=during.sample, interval=1)
        seen_seconds = time.monotonic() - rollout_started
        rollout_figures = during.close()
        settled_line = next((a["detail"] for a in record["audit"] if a["event"] == "stage_settled"), "")
        server_seconds = (record["settled_at"] - record["started_at"]) if record.get("settled_at") else None
        print(f"  rollout settled in {server_seconds} s (seen after {seen_seconds:.1f} s): {settled_line}", flush=True)
        disk = subprocess.run(["du", "-sm", work], capture_output=True, text=True).stdout.split()[0]
        return {
            "nodes": nodes,
            "simulator_processes": simulator_count,
            "setup_seconds": round(setup_seconds, 1),
            "deploy_v1_seconds": round(deploy_seconds, 1),
            "deploy_v1_summary": deploy_summary,
            "rollout_seconds": server_seconds,
            "rollout_seen_seconds": round(seen_seconds, 1),
            "rollout_settled": settled_line,
            "rollout_state": record["state"],
            "steady": steady_figures,
            "during_rollout": rollout_figures,
            "disk_mib": int(disk),
        }
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if not args.keep:
            for name in os.listdir(work):
                if name.startswith("sim-") or name == "control-plane":
                    shutil.rmtree(os.path.join(work, name), ignore_errors=True)


def table(results):
    rows = [
        "| nodes | rollout to all (s) | v1 deploy (s) | setup (s) | CP CPU steady / rollout | CP RSS steady / peak | windows/s steady | broker msgs/s steady / rollout | simulators CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, d = r["steady"], r["during_rollout"]
        rows.append(
            f"| {r['nodes']:,} | {r['rollout_seconds']} ({r['rollout_seen_seconds']}) | {r['deploy_v1_seconds']} | "
            f"{r['setup_seconds']} | {s['control_plane_cpu_percent']}% / {d['control_plane_cpu_percent']}% | "
            f"{s['control_plane_rss_mib']:.0f} / {d['control_plane_rss_peak_mib']:.0f} MiB | {s['windows_per_second']} | "
            f"{s['broker_messages_per_second']} / {d['broker_messages_per_second']} | "
            f"{s['simulators_cpu_percent']}% / {d['simulators_cpu_percent']}% |"
        )
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="folder with edgewise and edgewise-runtime")
    parser.add_argument("--work", required=True)
    parser.add_argument("--trust", required=True, help="release public key")
    parser.add_argument("--v1", required=True)
    parser.add_argument("--v2", required=True)
    parser.add_argument("--data", required=True, help="replay CSV")
    parser.add_argument("--nodes", default="1000,5000,10000")
    parser.add_argument("--rate", type=float, default=0.2, help="requests per second per node")
    parser.add_argument("--window", default="60s", help="telemetry window per node")
    parser.add_argument("--settle", type=float, default=20, help="seconds after the deploy before measuring")
    parser.add_argument("--steady", type=float, default=60, help="seconds of steady-state measurement")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep node and control plane data")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    results = []
    for nodes in [int(n) for n in args.nodes.split(",")]:
        print(f"fleet of {nodes:,} nodes", flush=True)
        results.append(run_fleet(args, nodes))
        if args.json_out:
            with open(args.json_out, "w") as out:
                json.dump(results, out, indent=2)
    print()
    print(table(results))


if __name__ == "__main__":
    sys.exit(main())
