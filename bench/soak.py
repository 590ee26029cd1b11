#!/usr/bin/env python3
"""Soak test driver: steady inference load on real nodes, two staged rollouts, and
samples of memory, errors and telemetry every SAMPLE seconds.

bench/soak.sh starts the control plane and the nodes, registers and pushes, and calls
this; it cleans the processes up. This script:

1. waits for every node to be online, deploys v1 to the group (`edgewise deploy --wait`);
2. runs an open-loop client per node (one keep-alive connection each) at RATE/N
   requests per second to `/v2/models/digits/infer`, KServe V2 bodies made from the rows
   of the digits data (shuffled per node, so the drift and output gates see real data);
3. starts a staged rollout v1 -> v2 at 1/3 of the time, and at 2/3 (once the first
   one settled) another one to whichever version the group is not on: v2 -> v1, or v2
   again if the first was rolled back;
4. every SAMPLE seconds records RSS of the control plane and of each node (/proc), the
   client's answers and errors, and telemetry windows produced by the nodes
   (`edgewise_telemetry_windows_total` on each node's /metrics) against windows stored
   by the control plane (`edgewise_telemetry_windows_ingested_total`);
5. at the end stops the load, waits for the nodes' outboxes to drain, counts the stored
   windows of each device (`GET /api/v1/telemetry/windows?device=`), prints a summary and
   writes it as JSON.

Exits 1 when the client saw any error (a non-200 answer or a connection error), when a
telemetry window was lost (produced - stored > 0 after the drain), when a process died
or a rollout did not settle. Standard library only.
"""

import argparse
import gzip
import http.client
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from procstat import status_mib

GROUP = "soak"
MODEL = "digits"
INFER_PATH = f"/v2/models/{MODEL}/infer"
# RSS growth is fitted over samples taken this long after the load started.
SLOPE_AFTER_SECONDS = 120


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="folder with edgewise")
    parser.add_argument("--server", required=True, help="control plane API base URL")
    parser.add_argument("--cp-pid", type=int, required=True, help="the control plane's process id")
    parser.add_argument("--node", action="append", required=True, metavar="ID:PID:PORT",
                        help="a node: device id, process id, HTTP port; repeat for each")
    parser.add_argument("--data", required=True, help="digits CSV (gzip), label in the last column")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200, help="requests per second, all nodes together")
    parser.add_argument("--sample", type=float, default=30, help="seconds between samples")
    parser.add_argument("--window", type=float, default=10, help="the nodes' telemetry window, seconds")
    parser.add_argument("--stages", default="30,100", help="rollout stages, cumulative percent")
    parser.add_argument("--bake", default="60s", help="rollout bake per stage (humantime)")
    parser.add_argument("--settle-timeout", type=float, default=600,
                        help="seconds a rollout may run past the end of the soak")
    parser.add_argument("--json-out", required=True)
    return parser.parse_args()


# ---------------------------------------------------------------- control plane access

class Api:
    """GETs against the control plane with the bearer token, and the CLI."""

    def __init__(self, base, token, bin_dir):
        self.base, self.token, self.bin = base.rstrip("/"), token, bin_dir

    def get(self, path, timeout=60):
        request = urllib.request.Request(self.base + path, headers={"authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def cli(self, *args, timeout=600):
        """Runs `edgewise --server BASE ARGS` (EDGEWISE_TOKEN comes from the environment)."""
        command = [os.path.join(self.bin, "edgewise"), "--server", self.base, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-800:]}")
        return done.stdout


def scrape(url, timeout=10):
    """Prometheus text from URL as {name: {labels: value}}; {} when it cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return {}
    values = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if match and not line.startswith("#"):
            values.setdefault(match.group(1), {})[match.group(2) or ""] = float(match.group(3))
    return values


def total(metrics, name):
    values = metrics.get(name)
    return None if values is None else sum(values.values())


def alive(pid):
    """Whether a process runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# ---------------------------------------------------------------- load

def infer_bodies(path, seed):
    """KServe V2 infer bodies, one per row of the digits data, in a shuffled order."""
    with gzip.open(path, "rt", encoding="ascii") as file:
        rows = [line.strip().split(",") for line in file if line.strip()]
    rows = [row for row in rows if all(re.match(r"^-?[0-9.]+$", v) for v in row)]  # skip a header
    random.Random(seed).shuffle(rows)
    bodies = []
    for row in rows:
        features = [float(v) for v in row[:-1]]
        body = {"inputs": [{"name": "input", "shape": [1, len(features)], "datatype": "FP32", "data": features}]}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


class Load(threading.Thread):
    """Open-loop requests to one node at a fixed rate over a keep-alive connection."""

    def __init__(self, name, port, rate, bodies, stop):
        super().__init__(name=f"load-{name}", daemon=True)
        self.node, self.port, self.rate, self.bodies, self.stop = name, port, rate, bodies, stop
        self.lock = threading.Lock()
        self.sent = self.ok = self.connection_errors = self.late = 0
        self.statuses = {}  # non-200 status -> count
        self.error_examples = []  # the first few, with the time they happened
        self.latencies = []  # seconds, since the last take_latencies()

    def note_error(self, what):
        if len(self.error_examples) < 20:
            self.error_examples.append({"at": time.strftime("%H:%M:%S"), "error": what[:300]})

    def run(self):
        interval = 1.0 / self.rate
        headers = {"content-type": "application/json"}
        connection = None
        index = 0
        due = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < due:
                self.stop.wait(due - now)
                continue
            if now - due > 1.0:  # more than a second behind: skip the backlog, count it
                with self.lock:
                    self.late += 1
                due = now
            due += interval
            body = self.bodies[index % len(self.bodies)]
            index += 1
            started = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("POST", INFER_PATH, body, headers)
                response = connection.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as err:
                if connection is not None:
                    connection.close()
                connection = None
                with self.lock:
                    self.sent += 1
                    self.connection_errors += 1
                    self.note_error(f"connection: {type(err).__name__}: {err}")
                continue
            elapsed = time.monotonic() - started
            with self.lock:
                self.sent += 1
                if status == 200:
                    self.ok += 1
                    self.latencies.append(elapsed)
                else:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    self.note_error(f"HTTP {status}: {answer[:200].decode(errors='replace')}")
        if connection is not None:
            connection.close()

    def counts(self):
        with self.lock:
            return {"sent": self.sent, "ok": self.ok, "non_200": sum(self.statuses.values()),
                    "non_200_by_status": {str(k): v for k, v in sorted(self.statuses.items())},
                    "connection_errors": self.connection_errors, "fell_behind": self.late}

    def take_latencies(self):
        with self.lock:
            taken, self.latencies = self.latencies, []
        return taken


def percentile(values, percent):
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


# ---------------------------------------------------------------- sampling

class Soak:
    def __init__(self, args):
        self.args = args
        token = os.environ.get("EDGEWISE_TOKEN")
        if not token:
            sys.exit("EDGEWISE_TOKEN is not set (bench/soak.sh reads it from the data folder)")
        self.api = Api(args.server, token, args.bin)
        self.nodes = []
        for spec in args.node:
            device, pid, port = spec.rsplit(":", 2)
            self.nodes.append({"id": device, "pid": int(pid), "port": int(port)})
        self.samples = []
        self.started = None
        self.loads = []
        self.stop = threading.Event()
        self.died = []
        self.load_seconds = None

    def log(self, message):
        at = "" if self.started is None else f"[{time.monotonic() - self.started:7.0f} s] "
        print(f"{at}{message}", flush=True)

    def processes(self):
        return [("control-plane", self.args.cp_pid)] + [(n["id"], n["pid"]) for n in self.nodes]

    def check_alive(self):
        for name, pid in self.processes():
            if not alive(pid) and name not in self.died:
                self.died.append(name)
                self.log(f"PROCESS DIED: {name} (pid {pid})")
        return not self.died

    def node_metrics(self, node):
        return scrape(f"http://127.0.0.1:{node['port']}/metrics")

    def telemetry_counts(self):
        """Windows produced (per node), waiting in the nodes' outboxes, stored (control plane)."""
        produced, outbox = {}, {}
        for node in self.nodes:
            metrics = self.node_metrics(node)
            produced[node["id"]] = total(metrics, "edgewise_telemetry_windows_total")
            outbox[node["id"]] = total(metrics, "edgewise_telemetry_outbox_windows")
        cp = scrape(self.args.server.rstrip("/") + "/metrics")
        return {
            "produced": produced,
            "outbox": outbox,
            "stored": total(cp, "edgewise_telemetry_windows_ingested_total"),
            "duplicates": total(cp, "edgewise_telemetry_windows_duplicate_total"),
        }

    def sample(self, label=""):
        elapsed = time.monotonic() - self.started
        rss = {name: status_mib(pid, "VmRSS") for name, pid in self.processes()}
        client = [load.counts() for load in self.loads]
        latencies = [x for load in self.loads for x in load.take_latencies()]
        telemetry = self.telemetry_counts()
        record = {
            "t_s": round(elapsed, 1),
            "label": label,
            "rss_mib": {k: (round(v, 1) if v is not None else None) for k, v in rss.items()},
            "requests": sum(c["sent"] for c in client),
            "ok": sum(c["ok"] for c in client),
            "non_200": sum(c["non_200"] for c in client),
            "connection_errors": sum(c["connection_errors"] for c in client),
            "p50_ms": None if not latencies else round(1000 * percentile(latencies, 50), 2),
            "p99_ms": None if not latencies else round(1000 * percentile(latencies, 99), 2),
            "windows_produced": sum(v or 0 for v in telemetry["produced"].values()),
            "windows_outbox": sum(v or 0 for v in telemetry["outbox"].values()),
            "windows_stored": telemetry["stored"],
        }
        self.samples.append(record)
        rss_text = " ".join(f"{k}={v:.0f}" if v is not None else f"{k}=gone" for k, v in rss.items())
        self.log(f"sample{(' ' + label) if label else ''}: {record['requests']} requests, "
                 f"{record['non_200']} non-200, {record['connection_errors']} connection errors, "
                 f"p50/p99 {record['p50_ms']}/{record['p99_ms']} ms; windows produced "
                 f"{record['windows_produced']:.0f} stored {record['windows_stored'] or 0:.0f} outbox "
                 f"{record['windows_outbox']:.0f}; RSS MiB {rss_text}")
        return record

    # ------------------------------------------------------------ steps

    def wait_online(self, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.check_alive():
                raise SystemExit("a process exited before the soak started")
            try:
                group = self.api.get(f"/api/v1/groups/{GROUP}", timeout=10)
                if group.get("online", 0) >= len(self.nodes):
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(1)
        raise SystemExit(f"the nodes were not all online after {timeout} s")

    def wait_serving(self, timeout=120):
        """Until every node answers an infer call with 200."""
        body = infer_bodies(self.args.data, 0)[0]
        deadline = time.monotonic() + timeout
        pending = list(self.nodes)
        while pending and time.monotonic() < deadline:
            for node in list(pending):
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", node["port"], timeout=5)
                    connection.request("POST", INFER_PATH, body, {"content-type": "application/json"})
                    if connection.getresponse().status == 200:
                        pending.remove(node)
                    connection.close()
                except (OSError, http.client.HTTPException):
                    pass
            time.sleep(0.5)
        if pending:
            raise SystemExit(f"not serving after {timeout} s: {', '.join(n['id'] for n in pending)}")

    def start_rollout(self, version):
        out = self.api.cli("--json", "rollout", "start", "--group", GROUP, "--model", MODEL,
                           "--version", str(version), "--stages", self.args.stages, "--bake", self.args.bake)
        record = json.loads(out)
        self.log(f"rollout {record['id']} started: {MODEL} v{record['baseline_version']} -> v{record['version']}, "
                 f"stages {record['stages']}, bake {record['bake_seconds']} s")
        return {"id": record["id"], "from": record["baseline_version"], "to": record["version"],
                "started_t_s": round(time.monotonic() - self.started, 1), "state": record["state"]}

    def poll_rollout(self, rollout):
        try:
            record = self.api.get(f"/api/v1/rollouts/{rollout['id']}", timeout=30)
        except (OSError, urllib.error.URLError) as err:
            self.log(f"cannot read rollout {rollout['id']}: {err}")
            return
        if record["state"] != rollout["state"] or record.get("stage") != rollout.get("stage"):
            self.log(f"rollout {rollout['id']}: {record['state']}, stage {record['stage'] + 1}/"
                     f"{len(record['stages'])}" + (f" ({record['reason']})" if record.get("reason") else ""))
        rollout.update(state=record["state"], stage=record["stage"], reason=record.get("reason"))
        if record["state"] in ("completed", "rolled_back") and "settled_t_s" not in rollout:
            rollout["settled_t_s"] = round(time.monotonic() - self.started, 1)
            rollout["audit"] = [f"{a.get('event')}: {a.get('detail', '')}" for a in record.get("audit", [])]

    def drain(self):
        """After the load stops: waits until every window is out of the outboxes and stored."""
        time.sleep(self.args.window + 2)  # the last window closes
        deadline = time.monotonic() + 60 + 3 * self.args.window
        while True:
            counts = self.telemetry_counts()
            done = (all((counts["outbox"].get(n["id"]) or 0) == 0 for n in self.nodes)
                    and (counts["stored"] or 0) >= sum(v or 0 for v in counts["produced"].values()))
            if done or time.monotonic() > deadline:
                return counts, self.stored_per_device(), done
            time.sleep(2)

    def stored_per_device(self):
        stored = {}
        for node in self.nodes:
            query = urllib.parse.urlencode({"device": node["id"]})
            windows = self.api.get(f"/api/v1/telemetry/windows?{query}", timeout=120)
            seqs = {w["window"]["window_seq"] for w in windows}
            stored[node["id"]] = {"windows": len(seqs),
                                  "requests": sum(w["window"]["requests"] for w in windows),
                                  "errors": sum(w["window"]["errors"] for w in windows)}
        return stored

    # ------------------------------------------------------------ the run

    def run(self):
        args = self.args
        duration = args.minutes * 60
        self.log(f"waiting for {len(self.nodes)} nodes to be online")
        self.wait_online()
        self.log(f"deploying {MODEL} v1 to group {GROUP}")
        self.api.cli("deploy", "--group", GROUP, "--model", MODEL, "--version", "1", "--wait", "--timeout", "300s")
        self.wait_serving()

        per_node = args.rate / len(self.nodes)
        for index, node in enumerate(self.nodes):
            self.loads.append(Load(node["id"], node["port"], per_node, infer_bodies(args.data, index + 1), self.stop))
        self.started = time.monotonic()
        for load in self.loads:
            load.start()
        self.log(f"load started: {args.rate:g} requests/s over {len(self.nodes)} nodes for {args.minutes:g} min")
        self.sample("start")

        rollouts = []
        next_sample = args.sample
        next_poll = 0.0
        rollout_times = (duration / 3, 2 * duration / 3)
        next_note = duration
        failure = None
        while True:
            now = time.monotonic() - self.started
            if not self.check_alive():
                failure = f"process died: {', '.join(self.died)}"
                break
            if len(rollouts) < 2 and now >= rollout_times[len(rollouts)] and (
                    not rollouts or "settled_t_s" in rollouts[-1]):
                if not rollouts:
                    version = 2
                else:  # to the version the group is not on: back to v1, or v2 again after a rollback
                    version = 1 if rollouts[-1]["state"] == "completed" else 2
                try:
                    rollouts.append(self.start_rollout(version))
                except RuntimeError as err:
                    failure = f"cannot start a rollout: {err}"
                    self.log(failure)
                    break
            if rollouts and "settled_t_s" not in rollouts[-1] and now >= next_poll:
                self.poll_rollout(rollouts[-1])
                next_poll = now + 2
            if now >= next_sample:
                self.sample()
                next_sample += args.sample
            if now >= duration:
                waiting = len(rollouts) < 2 or "settled_t_s" not in rollouts[-1]
                if not waiting:
                    break
                if now >= duration + args.settle_timeout:
                    failure = "a rollout did not settle in time" if len(rollouts) == 2 else \
                        "the second rollout could not start: the first did not settle in time"
                    self.log(failure)
                    break
                if now >= next_note:
                    self.log("soak time is up; waiting for the rollouts to settle, load still running")
                    next_note += 30
            time.sleep(0.5)

        self.stop.set()
        for load in self.loads:
            load.join(timeout=15)
        self.log("load stopped; waiting for telemetry to drain")
        self.load_seconds = self.sample("end of load")["t_s"]
        counts, stored, drained = self.drain()
        self.sample("after drain")
        return self.summary(rollouts, counts, stored, drained, failure)

    def summary(self, rollouts, counts, stored, drained, failure):
        args = self.args
        client = {load.node: load.counts() for load in self.loads}
        errors = sum(c["non_200"] + c["connection_errors"] for c in client.values())
        telemetry = {}
        for node in self.nodes:
            produced = counts["produced"].get(node["id"])
            produced = int(produced) if produced is not None else None
            kept = stored[node["id"]]
            telemetry[node["id"]] = {
                "produced": produced,
                "stored": kept["windows"],
                "lost": None if produced is None else max(0, produced - kept["windows"]),
                "outbox_left": counts["outbox"].get(node["id"]),
                "requests_in_windows": kept["requests"],
                "client_requests": client[node["id"]]["sent"],
            }
        produced_total = sum(t["produced"] or 0 for t in telemetry.values())
        stored_total = sum(t["stored"] for t in telemetry.values())
        lost_total = sum(t["lost"] or 0 for t in telemetry.values())
        unreadable = [n for n, t in telemetry.items() if t["produced"] is None]

        memory = {}
        for name, _ in self.processes():
            points = [(s["t_s"], s["rss_mib"].get(name)) for s in self.samples if s["rss_mib"].get(name) is not None]
            if not points:
                memory[name] = None
                continue
            # The fit covers the load only: the read-back after it (every stored window
            # through the API, to count them) is the script's check, reported apart.
            under_load = [(t, v) for t, v in points if t <= self.load_seconds]
            later = [(t, v) for t, v in under_load if t >= SLOPE_AFTER_SECONDS]
            memory[name] = {
                "first_mib": points[0][1], "last_mib": under_load[-1][1] if under_load else None,
                "max_mib": max(v for _, v in under_load) if under_load else None,
                "after_readback_mib": points[-1][1],
                "slope_mib_per_hour": slope(later),
                "slope_samples": len(later),
                # A cache that fills and then stays full shows here as a flat end.
                "slope_second_half_mib_per_hour": slope(later[len(later) // 2:]),
            }

        problems = []
        if failure:
            problems.append(failure)
        if errors:
            problems.append(f"{errors} client errors")
        if lost_total:
            problems.append(f"{lost_total} telemetry windows lost")
        if unreadable:
            problems.append(f"no window counter from {', '.join(unreadable)}")
        if not drained:
            problems.append("telemetry did not drain in time")
        if len(rollouts) < 2:
            problems.append(f"only {len(rollouts)} of 2 rollouts ran")
        result = {
            "minutes": args.minutes,
            "load_seconds": self.load_seconds,
            "nodes": len(self.nodes),
            "rate_per_second": args.rate,
            "requests": sum(c["sent"] for c in client.values()),
            "ok": sum(c["ok"] for c in client.values()),
            "errors": errors,
            "client": client,
            "error_examples": {load.node: load.error_examples for load in self.loads if load.error_examples},
            "rollouts": rollouts,
            "memory": memory,
            "telemetry": {"produced": produced_total, "stored": stored_total, "lost": lost_total,
                          "duplicates_dropped": counts["duplicates"], "drained": drained, "per_node": telemetry},
            "samples": self.samples,
            "problems": problems,
            "passed": not problems,
        }
        with open(args.json_out, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=2)
            file.write("\n")
        print_summary(result, args.json_out)
        return 0 if result["passed"] else 1


def slope(points):
    """Least-squares slope of (seconds, MiB) points, in MiB per hour; None under 2 points."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return round(3600 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var, 2)


def print_summary(result, path):
    print()
    print(f"soak summary: {result['minutes']:g} min planned, {result['load_seconds']:.0f} s of load, "
          f"{result['nodes']} nodes, {result['rate_per_second']:g} requests/s")
    print(f"  requests {result['requests']}, ok {result['ok']}, errors {result['errors']}")
    for node, c in result["client"].items():
        print(f"    {node}: sent {c['sent']}, non-200 {c['non_200']} {c['non_200_by_status'] or ''}, "
              f"connection errors {c['connection_errors']}, fell behind {c['fell_behind']}")
    for node, examples in result["error_examples"].items():
        for example in examples[:5]:
            print(f"    {node} {example['at']}: {example['error']}")
    for r in result["rollouts"]:
        print(f"  rollout {r['id']} v{r['from']} -> v{r['to']}: {r['state']} "
              f"(started {r['started_t_s']} s, settled {r.get('settled_t_s', '-')} s)"
              + (f": {r['reason']}" if r.get("reason") else ""))
    print("  RSS MiB under load (first / last / max, growth MiB/h after the first 2 min; over the "
          "second half; after the read-back):")
    for name, m in result["memory"].items():
        if m is None:
            print(f"    {name}: no samples")
            continue
        growth = "-" if m["slope_mib_per_hour"] is None else f"{m['slope_mib_per_hour']:+.1f}"
        late = m["slope_second_half_mib_per_hour"]
        late = "-" if late is None else f"{late:+.1f}"
        print(f"    {name}: {m['first_mib']:.1f} / {m['last_mib']:.1f} / {m['max_mib']:.1f}, "
              f"{growth} MiB/h ({m['slope_samples']} samples); {late} MiB/h; "
              f"{m['after_readback_mib']:.1f}")
    t = result["telemetry"]
    print(f"  telemetry windows: produced {t['produced']}, stored {t['stored']}, lost {t['lost']}, "
          f"duplicates dropped {t['duplicates_dropped'] or 0:.0f}, drained {t['drained']}")
    for node, n in t["per_node"].items():
        print(f"    {node}: produced {n['produced']}, stored {n['stored']}, lost {n['lost']}; "
              f"requests in stored windows {n['requests_in_windows']} "
              f"(load client sent {n['client_requests']}, plus the readiness probes)")
    print(f"  {'PASS' if result['passed'] else 'FAIL: ' + '; '.join(result['problems'])}")
    print(f"  JSON: {path}")


def main():
    soak = Soak(parse_args())
    try:
        return soak.run()
    finally:
        soak.stop.set()


if __name__ == "__main__":
    sys.exit(main())
