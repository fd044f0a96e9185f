#!/usr/bin/env python3
"""Cost of the signed ref-state log (refs/countersign/log), issue 10.

    bench/ledger/run.py [--bin PATH] [--pushes 10000] [--work DIR]
                        [--sample 100] [--idle-runs 300] [--old-commits 20]
                        [--checkpoints 100,1000,2000,5000,10000] [--json FILE]

Makes a bare server repository with install.sh --binary, a policy that
protects refs/heads/main for one SSH developer key (and publishes the
server's log key as [log] server-key) and a clone. Then it pushes --pushes
times over file://, one new commit per push, signed with that key
(`git commit-tree -S`, gpg.format=ssh) just before its push (making it is
not part of the push's time), and measures:

  (a) the post-receive step: `countersign hook post-receive` run by hand
      --idle-runs times on the final repository (idempotent: nothing
      changed, so it reads the tip entry, the refs and the audit log tail
      and writes nothing), and --sample real pushes per mode, with the
      post-receive shim and without it (then the next pre-receive fills
      the entry in), each hook timed by a wrapper (bash $EPOCHREALTIME);
      the hooks of the last --window-sample pushes of every --window, and
      the post-receive by hand at every checkpoint, to see whether it
      grows with the log;
  (b) the size of the log: entries, objects and their bytes
      (%(objectsize) and %(objectsize:disk)) before and after `git gc`,
      and the JSON audit log;
  (c) the wall time of the --pushes pushes, and per 1,000-push window;
  (d) git's own cost of the log: its connectivity check after receiving a
      push (`rev-list --objects --not --all --alternate-refs`) stops at
      every ref, the log's too, so it walks every log entry newer than the
      pushed commits. Timed at every checkpoint for a commit older than the
      log (with and without refs/countersign), and as whole pushes of a new
      branch older than the log (--old-commits per mode), with git's
      defaults and with receive.hideRefs=refs/countersign and
      core.alternateRefsPrefixes="refs/heads/ refs/tags/" (both needed).

receive.autogc is off on the server so that git's background `gc --auto`
does not land in the timings, and so the "before gc" sizes are the loose
objects the hook wrote. Needs git, ssh-keygen, bash. Without --bin it runs
`cargo build --release --locked --bin countersign` (a no-op when fresh).
Prints a table; writes JSON to bench/ledger/results-<UTC date>.json unless
--json names another file. Timing belongs here, never in tests.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOG_REF = "refs/countersign/log"
MAIN = "refs/heads/main"
# The sample alternates with/without post-receive in this many blocks each.
SAMPLE_BLOCKS = 4


def die(msg):
    sys.exit(f"bench/ledger: error: {msg}")


def sh(args, cwd=None, env=None, check=True, stdin=None, input_=None):
    p = subprocess.run(args, cwd=cwd, env=env, stdin=stdin, input=input_,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        die(f"command failed ({p.returncode}): {' '.join(map(str, args))}\n"
            f"{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")
    return p


def out(args, **kw):
    return sh(args, **kw).stdout.decode().strip()


def pct(values, q):
    """The q-quantile (0..1) by nearest rank, in the values' unit."""
    v = sorted(values)
    if not v:
        return None
    k = max(0, min(len(v) - 1, int(round(q * len(v) + 0.5)) - 1))
    return v[k]


def stats_ms(seconds):
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(pct(ms, 0.95), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="cs-ledger-bench-")
        if os.path.exists(os.path.join(self.work, "server.git")):
            die(f"{self.work} already holds a run; pass an empty --work")
        os.makedirs(self.work, exist_ok=True)
        self.server = os.path.join(self.work, "server.git")
        self.client = os.path.join(self.work, "client")
        self.home = os.path.join(self.work, "home")
        os.makedirs(self.home, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "HOME": self.home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Dev Example", "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev Example", "GIT_COMMITTER_EMAIL": "dev@example.com",
            "LC_ALL": "C",
        })
        for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                  "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH"):
            self.env.pop(k, None)
        self.hooktimes = os.path.join(self.work, "hooktimes.log")
        self.result = {}

    # -- setup -------------------------------------------------------------

    def binary(self):
        if self.args.bin:
            b = os.path.abspath(self.args.bin)
        else:
            print("bench/ledger: cargo build --release --locked --bin countersign", file=sys.stderr)
            sh(["cargo", "build", "--release", "--locked", "--bin", "countersign"], cwd=SRC)
            b = os.path.join(SRC, "target", "release", "countersign")
        if not os.access(b, os.X_OK):
            die(f"{b} is not an executable file")
        if sh([b, "log", "--help"], check=False).returncode != 0:
            die(f"{b} has no `log` subcommand: it predates the ref-state log; rebuild it")
        self.bin = b
        self.result["binary"] = {
            "path": b,
            "version": out([b, "--version"]),
            "mtime_utc": datetime.datetime.fromtimestamp(
                os.path.getmtime(b), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            # What the source tree was at when this ran; the binary may be older.
            "source_tree_head": out(["git", "-C", SRC, "rev-parse", "HEAD"]),
        }

    def git(self, *args, cwd=None, check=True):
        return sh(["git", *args], cwd=cwd or self.client, env=self.env, check=check)

    def sgit(self, *args, check=True):
        return sh(["git", "--git-dir", self.server, *args], env=self.env, check=check)

    def setup(self):
        key = os.path.join(self.work, "dev")
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev@example.com", "-f", key])
        self.key = key
        with open(key + ".pub") as f:
            public = f.read().strip()
        sh(["git", "init", "-q", "--bare", "-b", "main", self.server], env=self.env)
        # git's background `gc --auto` after a push would land in the timings.
        self.sgit("config", "receive.autogc", "false")
        self.policy = os.path.join(self.work, "policy.toml")
        policy = f"""[repository]
id = "bench/ledger"

[roles]
developer = "writes code"

[people.dev]
name = "Dev Example"
roles = ["developer"]
ssh = ["{public}"]

[[rule]]
name = "main"
refs = ["{MAIN}"]
commit-signers = ["developer"]
force-push = false
delete = false
"""
        with open(self.policy, "w") as f:
            f.write(policy)
        sh(["bash", os.path.join(SRC, "install.sh"), self.server, "--policy", self.policy,
            "--binary", self.bin], env=self.env)
        self.hook_bin = os.path.join(self.server, "hooks", "countersign")
        with open(os.path.join(self.server, "countersign", "server-key.pub")) as f:
            server_key = f.read().strip()
        # Publish the server's key, as the README asks.
        with open(self.policy, "a") as f:
            f.write(f'\n[log]\nserver-key = "{server_key}"\n')
        sh([self.bin, "policy", "check", "--policy", self.policy], env=self.env)
        # The shims, kept aside for the timing wrappers.
        self.shims = os.path.join(self.work, "shims")
        os.makedirs(self.shims, exist_ok=True)
        for kind in ("pre-receive", "post-receive"):
            shutil.copy2(os.path.join(self.server, "hooks", kind), os.path.join(self.shims, kind))
        sh(["git", "init", "-q", "-b", "main", self.client], env=self.env)
        self.git("remote", "add", "origin", "file://" + self.server)
        self.git("config", "gpg.format", "ssh")
        self.git("config", "user.signingkey", key)

    def prepare_commits(self):
        blob = sh(["git", "hash-object", "-w", "--stdin"], cwd=self.client, env=self.env,
                  input_=b"ledger bench\n").stdout.decode().strip()
        self.tree = sh(["git", "mktree"], cwd=self.client, env=self.env,
                       input_=f"100644 blob {blob}\tREADME\n".encode()).stdout.decode().strip()
        self.parent = None
        self.made = 0
        self.making_s = 0.0

    def commit(self):
        """The next signed commit on main, made now: newer than every log
        entry, as a pushed commit usually is."""
        t0 = time.monotonic()
        self.made += 1
        args = ["git", "commit-tree", "-S", self.tree, "-m", f"commit {self.made}"]
        if self.parent:
            args[3:3] = ["-p", self.parent]
        else:
            self.first_date = int(time.time()) - 86400
            env = dict(self.env, GIT_COMMITTER_DATE=f"@{self.first_date} +0000",
                       GIT_AUTHOR_DATE=f"@{self.first_date} +0000")
            self.first = out(args, cwd=self.client, env=env)
            self.parent = self.first
            self.making_s += time.monotonic() - t0
            return self.first
        self.parent = out(args, cwd=self.client, env=self.env)
        self.making_s += time.monotonic() - t0
        return self.parent

    def old_branch_commit(self):
        """A signed commit on the first commit (a day old), dated like it:
        older than every log entry, as a branch started long ago is."""
        self.made += 1
        d = f"@{self.first_date} +0000"
        return out(["git", "commit-tree", "-S", self.tree, "-p", self.first, "-m", f"old branch {self.made}"],
                   cwd=self.client, env=dict(self.env, GIT_COMMITTER_DATE=d, GIT_AUTHOR_DATE=d))

    # -- measuring -----------------------------------------------------------

    def push(self, commit):
        t0 = time.monotonic()
        p = sh(["git", "push", "-q", "origin", f"{commit}:{MAIN}"], cwd=self.client,
               env=self.env, check=False)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            die(f"push of {commit} failed:\n{p.stderr.decode(errors='replace')}")
        return dt

    def entries(self):
        return int(self.sgit("rev-list", "--count", LOG_REF).stdout.decode())

    def idle_post_receive(self, runs):
        """`countersign hook post-receive` with nothing to do, `runs` times."""
        env = dict(self.env, GIT_DIR=self.server)
        times = []
        for _ in range(runs):
            t0 = time.monotonic()
            p = subprocess.run([self.hook_bin, "hook", "post-receive"], env=env, cwd=self.server,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
            times.append(time.monotonic() - t0)
            if p.returncode != 0 or p.stderr:
                die(f"post-receive by hand: exit {p.returncode}\n{p.stderr.decode(errors='replace')}")
        return times

    def process_start(self, runs):
        """`countersign --version`: what any hook run costs before it does anything."""
        times = []
        for _ in range(runs):
            t0 = time.monotonic()
            subprocess.run([self.hook_bin, "--version"], stdout=subprocess.DEVNULL)
            times.append(time.monotonic() - t0)
        return times

    def log_objects(self):
        """(objects, bytes, bytes on disk) of everything reachable from the log."""
        listing = self.sgit("rev-list", "--objects", LOG_REF).stdout
        ids = b"\n".join(l.split(b" ", 1)[0] for l in listing.splitlines() if l) + b"\n"
        p = sh(["git", "--git-dir", self.server, "cat-file",
                "--batch-check=%(objectsize) %(objectsize:disk)"], env=self.env, input_=ids)
        n = size = disk = 0
        for line in p.stdout.decode().splitlines():
            a, b = line.split()
            n += 1
            size += int(a)
            disk += int(b)
        return {"objects": n, "bytes": size, "bytes_on_disk": disk}

    def du(self, path):
        total = 0
        for root, _, files in os.walk(path):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    pass
        return total

    @staticmethod
    def lines(path):
        if not os.path.exists(path):
            return 0
        with open(path, "rb") as f:
            return sum(1 for _ in f)

    def small_sizes(self):
        audit = os.path.join(self.server, "countersign", "audit.log")
        return {"entries": self.entries(), "log_objects": self.log_objects(),
                "audit_log_bytes": os.path.getsize(audit) if os.path.exists(audit) else 0}

    def partial(self, windows, at_checkpoint):
        """Write what is known so far, in case the run is cut short."""
        with open(self.json_path + ".partial", "w") as f:
            json.dump({**self.result, "push_windows": windows, "checkpoints": at_checkpoint}, f, indent=1)

    def sizes(self):
        audit = os.path.join(self.server, "countersign", "audit.log")
        return {
            "entries": self.entries(),
            "log_objects": self.log_objects(),
            "audit_log_bytes": os.path.getsize(audit) if os.path.exists(audit) else 0,
            "audit_log_records": self.lines(audit),
            "objects_dir_bytes": self.du(os.path.join(self.server, "objects")),
            "count_objects": self.sgit("count-objects", "-v").stdout.decode().split("\n"),
        }

    def install_wrappers(self, with_post):
        """Hooks that time the shims (bash $EPOCHREALTIME: no fork for the clock)."""
        hooks = os.path.join(self.server, "hooks")
        for kind in ("pre-receive", "post-receive"):
            path = os.path.join(hooks, kind)
            if os.path.exists(path):
                os.remove(path)
            if kind == "post-receive" and not with_post:
                continue
            with open(path, "w") as f:
                f.write(f"""#!/bin/bash
s=$EPOCHREALTIME
'{os.path.join(self.shims, kind)}'
rc=$?
e=$EPOCHREALTIME
echo "{kind} $s $e $rc" >> '{self.hooktimes}'
exit $rc
""")
            os.chmod(path, 0o755)

    def restore_shims(self):
        for kind in ("pre-receive", "post-receive"):
            dst = os.path.join(self.server, "hooks", kind)
            if os.path.exists(dst):
                os.remove(dst)
            shutil.copy2(os.path.join(self.shims, kind), dst)

    def read_hooktimes(self):
        rows = []
        if os.path.exists(self.hooktimes):
            with open(self.hooktimes) as f:
                for line in f:
                    kind, s, e, rc = line.split()
                    rows.append((kind, float(e) - float(s), int(rc)))
            os.remove(self.hooktimes)
        return rows

    def sample(self):
        """Real pushes with the post-receive shim and without it, in
        alternating blocks; per push: hook times and the push's wall time."""
        per_mode = {True: {"push": [], "pre": [], "post": [], "hooks": []},
                    False: {"push": [], "pre": [], "post": [], "hooks": []}}
        blocks = SAMPLE_BLOCKS
        size = self.args.sample // blocks + 1
        for b in range(2 * blocks):
            with_post = b % 2 == 0
            self.install_wrappers(with_post)
            for j in range(size):
                self.read_hooktimes()
                wall = self.push(self.commit())
                rows = self.read_hooktimes()
                pre = sum(t for k, t, _ in rows if k == "pre-receive")
                post = sum(t for k, t, _ in rows if k == "post-receive")
                if any(rc != 0 for _, _, rc in rows):
                    die(f"a hook failed during the sample: {rows}")
                # The first push of a block after a block without the shim
                # also fills in the entry that block left: not counted.
                if j == 0 and b > 0:
                    continue
                m = per_mode[with_post]
                m["push"].append(wall)
                m["pre"].append(pre)
                m["post"].append(post)
                m["hooks"].append(pre + post)
        self.restore_shims()
        return per_mode

    HIDE = [("receive.hideRefs", "refs/countersign"),
            ("core.alternateRefsPrefixes", "refs/heads/ refs/tags/")]

    def connectivity(self, runs):
        """git's connectivity check after a push (receive-pack runs `rev-list
        --objects --stdin --not --all --quiet`, plus the refs of the
        quarantine's alternate, i.e. the same refs) for a commit older than
        every log entry and on no ref: the walk goes down every log entry
        newer than the commit. The same with refs/countersign left out (what
        HIDE does in receive-pack)."""
        d = f"@{self.first_date} +0000"
        tree = self.sgit("rev-parse", f"{self.first}^{{tree}}").stdout.decode().strip()
        x = sh(["git", "--git-dir", self.server, "commit-tree", tree, "-p", self.first, "-m", "not on any ref"],
               env=dict(self.env, GIT_COMMITTER_DATE=d, GIT_AUTHOR_DATE=d)).stdout.decode().strip()
        base = ["git", "--git-dir", self.server, "rev-list", "--objects", "--stdin", "--not"]
        modes = {"default": base + ["--all", "--quiet"],
                 "log left out": base + ["--exclude=refs/countersign/*", "--all", "--quiet"]}
        times = {k: [] for k in modes}
        for _ in range(runs):
            for k, cmd in modes.items():
                t0 = time.monotonic()
                sh(cmd, env=self.env, input_=(x + "\n").encode())
                times[k].append(time.monotonic() - t0)
        return {k: stats_ms(v) for k, v in times.items()}

    def old_branch_pushes(self, count):
        """Pushes of a new branch whose commit is older than every log entry
        (a branch started a day before the log), with git's defaults and with
        refs/countersign kept out of the connectivity check (HIDE: both
        settings are needed, since receive-pack also stops at the refs of
        the quarantine's alternate, the repository itself); alternating
        blocks of 5. The whole push, hooks included."""
        res = {"default": [], "log hidden": []}
        for b in range(2 * max(1, count // 5)):
            hidden = b % 2 == 1
            for k, v in self.HIDE:
                if hidden:
                    self.sgit("config", k, v)
                else:
                    self.sgit("config", "--unset-all", k, check=False)
            for _ in range(5):
                c = self.old_branch_commit()
                t0 = time.monotonic()
                p = sh(["git", "push", "-q", "origin", f"{c}:refs/heads/old-{self.made}"], cwd=self.client,
                       env=self.env, check=False)
                dt = time.monotonic() - t0
                if p.returncode != 0:
                    die(f"push of {c} failed:\n{p.stderr.decode(errors='replace')}")
                res["log hidden" if hidden else "default"].append(dt)
        for k, _ in self.HIDE:
            self.sgit("config", "--unset-all", k, check=False)
        return {k: stats_ms(v) for k, v in res.items()}

    # -- the run -----------------------------------------------------------

    def run(self):
        a = self.args
        started = time.monotonic()
        self.binary()
        self.result["machine"] = {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "git": out(["git", "--version"]),
            "loadavg_start": loadavg(),
            "note": a.note,
        }
        self.result["work"] = self.work
        self.setup()
        self.prepare_commits()
        self.result["pushes"] = a.pushes

        WINDOW = a.window
        checkpoints = sorted({c for c in a.checkpoints if 0 < c <= a.pushes} | {a.pushes})
        pushes, at_checkpoint, windows = [], [], []
        hooks = {"pre": [], "post": []}
        print(f"bench/ledger: pushing {a.pushes} times (load {loadavg()})", file=sys.stderr)
        t_all = time.monotonic()
        for i in range(a.pushes):
            n = i + 1
            # The last --window-sample pushes of every 1,000 go through the
            # timing wrappers: the hooks' own times as the log grows.
            wrapped = WINDOW - (n - 1) % WINDOW <= a.window_sample
            if wrapped and (n - 1) % WINDOW == WINDOW - a.window_sample:
                self.install_wrappers(True)
                self.read_hooktimes()
            pushes.append(self.push(self.commit()))
            if wrapped:
                rows = self.read_hooktimes()
                if any(rc != 0 for _, _, rc in rows):
                    die(f"a hook failed: {rows}")
                hooks["pre"].append(sum(t for k, t, _ in rows if k == "pre-receive"))
                hooks["post"].append(sum(t for k, t, _ in rows if k == "post-receive"))
            if n % WINDOW == 0 or n == a.pushes:
                self.restore_shims()
                w = pushes[(n - 1) // WINDOW * WINDOW:n]
                windows.append({"pushes": f"{(n - 1) // WINDOW * WINDOW + 1}-{n}", "push": stats_ms(w),
                                "loadavg": loadavg()})
                if hooks["post"]:
                    windows[-1]["post_receive"] = stats_ms(hooks["post"])
                    windows[-1]["pre_receive"] = stats_ms(hooks["pre"])
                hooks = {"pre": [], "post": []}
                print(f"  {n}/{a.pushes} pushes, this window: push median {windows[-1]['push']['median_ms']} ms,"
                      f" post-receive median {windows[-1].get('post_receive', {}).get('median_ms')} ms"
                      f" (load {loadavg()})", file=sys.stderr)
            if n in checkpoints:
                t_cp = time.monotonic()
                idle = self.idle_post_receive(a.checkpoint_runs)
                at_checkpoint.append({"after_pushes": n, "idle_post_receive": stats_ms(idle),
                                      "connectivity_old_commit": self.connectivity(a.connectivity_runs),
                                      "loadavg": loadavg(), **self.small_sizes()})
                self.partial(windows, at_checkpoint)
                t_all += time.monotonic() - t_cp  # not part of the pushes' wall time
        total = time.monotonic() - t_all
        self.result["push_wall"] = {"total_s": round(total, 1), **stats_ms(pushes)}
        self.result["push_windows"] = windows
        self.result["checkpoints"] = at_checkpoint

        print("bench/ledger: sizes, idle post-receive, sample", file=sys.stderr)
        self.result["size_before_gc"] = self.sizes()
        self.result["process_start"] = stats_ms(self.process_start(a.idle_runs))
        self.result["idle_post_receive"] = stats_ms(self.idle_post_receive(a.idle_runs))
        self.result["commit_creation_s"] = round(self.making_s, 1)
        per_mode = self.sample()
        self.result["sample"] = {
            ("with_post_receive" if k else "without_post_receive"): {n: stats_ms(v) for n, v in m.items() if v}
            for k, m in per_mode.items()
        }
        # One more push with the shims back fills in what the last block left.
        self.push(self.commit())
        if a.old_commits:
            print("bench/ledger: pushes of a branch older than the log", file=sys.stderr)
            self.result["old_branch_pushes"] = self.old_branch_pushes(a.old_commits)
        t0 = time.monotonic()
        v = sh([self.hook_bin, "log", "verify"], cwd=self.server, env=dict(self.env, GIT_DIR=self.server),
               check=False)
        self.result["log_verify"] = {"seconds": round(time.monotonic() - t0, 2), "exit": v.returncode,
                                     "output": (v.stdout + v.stderr).decode(errors="replace")[-500:]}
        if v.returncode != 0:
            print(f"bench/ledger: warning: `countersign log verify` failed:\n{self.result['log_verify']['output']}",
                  file=sys.stderr)
        self.result["size_final_before_gc"] = self.sizes()
        t0 = time.monotonic()
        self.sgit("gc", "-q")
        self.result["gc_s"] = round(time.monotonic() - t0, 1)
        self.result["size_after_gc"] = self.sizes()
        self.result["idle_post_receive_after_gc"] = stats_ms(self.idle_post_receive(a.idle_runs))
        self.result["connectivity_old_commit_after_gc"] = self.connectivity(a.connectivity_runs * 3)
        self.result["machine"]["loadavg_end"] = loadavg()
        self.result["wall_s"] = round(time.monotonic() - started, 1)
        self.result["date_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.result


def table(r):
    lines = []
    n = r["pushes"]
    b, g = r["size_before_gc"], r["size_after_gc"]
    s = r["sample"]
    w, wo = s["with_post_receive"], s["without_post_receive"]

    def ms(x):
        return f"{x['median_ms']:.1f} / {x['p95_ms']:.1f}"

    lines.append(f"ref-state log, {n:,} pushes of one signed commit each (median / p95 ms)")
    lines.append(f"  post-receive by hand, nothing to do ({r['idle_post_receive']['n']} runs): {ms(r['idle_post_receive'])}")
    lines.append(f"  process start (`countersign --version`):              {ms(r['process_start'])}")
    lines.append(f"  sample pushes ({w['push']['n']} with the post-receive shim, {wo['push']['n']} without):")
    lines.append(f"    post-receive hook:                 {ms(w['post'])}")
    lines.append(f"    pre-receive hook:  with {ms(w['pre'])}   without {ms(wo['pre'])}")
    lines.append(f"    both hooks:        with {ms(w['hooks'])}   without {ms(wo['hooks'])}")
    lines.append(f"    whole push:        with {ms(w['push'])}   without {ms(wo['push'])}")
    lines.append(f"  the {n:,} pushes: {r['push_wall']['total_s']:.0f} s, per push {ms(r['push_wall'])}"
                 f" (making the commits: {r['commit_creation_s']:.0f} s more)")
    if "old_branch_pushes" in r:
        o = r["old_branch_pushes"]
        lines.append(f"  pushes of a new branch older than the log: {ms(o['default'])},"
                     f" with refs/countersign hidden from git's connectivity check: {ms(o['log hidden'])}")
    for w_ in r["push_windows"]:
        hooks = ""
        if "post_receive" in w_:
            hooks = (f", hooks of the last {w_['post_receive']['n']}: post-receive {ms(w_['post_receive'])},"
                     f" pre-receive {ms(w_['pre_receive'])}")
        lines.append(f"  pushes {w_['pushes']:>11}: push {ms(w_['push'])}{hooks}")
    for c in r["checkpoints"]:
        cc = c["connectivity_old_commit"]
        lines.append(f"  after {c['after_pushes']:>6,} pushes ({c['entries']:,} entries): "
                     f"post-receive by hand {ms(c['idle_post_receive'])}; git's connectivity check of a commit"
                     f" older than the log {ms(cc['default'])}, log left out {ms(cc['log left out'])}")
    lines.append(f"  log after {n:,} pushes: {b['entries']:,} entries, {b['log_objects']['objects']:,} objects, "
                 f"{b['log_objects']['bytes']:,} bytes; on disk {b['log_objects']['bytes_on_disk']:,} loose, "
                 f"{g['log_objects']['bytes_on_disk']:,} after git gc ({g['entries']:,} entries)")
    cg = r["connectivity_old_commit_after_gc"]
    lines.append(f"  after git gc: post-receive by hand {ms(r['idle_post_receive_after_gc'])}; git's connectivity check"
                 f" of a commit older than the log {ms(cg['default'])}, log left out {ms(cg['log left out'])}")
    lines.append(f"  JSON audit log: {b['audit_log_bytes']:,} bytes, {b['audit_log_records']:,} records")
    lines.append(f"  `countersign log verify` of the whole log: {r['log_verify']['seconds']} s (exit {r['log_verify']['exit']})")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="countersign binary (default: build target/release/countersign)")
    ap.add_argument("--pushes", type=int, default=10000)
    ap.add_argument("--work", help="an empty directory for the run (default: a new one in /tmp)")
    ap.add_argument("--sample", type=int, default=100, help="sample pushes per mode (with and without post-receive)")
    ap.add_argument("--idle-runs", type=int, default=300)
    ap.add_argument("--checkpoint-runs", type=int, default=100)
    ap.add_argument("--window", type=int, default=1000, help="pushes per window of the per-window statistics")
    ap.add_argument("--window-sample", type=int, default=50,
                    help="pushes at the end of every window whose hooks are timed")
    ap.add_argument("--checkpoints", default="100,1000,2000,5000,10000",
                    type=lambda s: [int(x) for x in s.split(",") if x])
    ap.add_argument("--old-commits", type=int, default=20,
                    help="pushes per mode of a branch older than the log (0: none)")
    ap.add_argument("--connectivity-runs", type=int, default=10,
                    help="runs per mode of git's connectivity check at each checkpoint")
    ap.add_argument("--json", help="where to write the results (default bench/ledger/results-<date>.json)")
    ap.add_argument("--note", default="", help="a note on the machine, kept in the JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    if a.pushes < 1 or a.sample < 4:
        die("--pushes must be at least 1 and --sample at least 4")
    if a.window < 1 or not 0 <= a.window_sample < a.window:
        die("--window must be positive and --window-sample below it")
    path = a.json or os.path.join(SRC, "bench", "ledger",
                                  f"results-{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}.json")
    bench = Bench(a)
    bench.json_path = path
    r = bench.run()
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
        f.write("\n")
    if os.path.exists(path + ".partial"):
        os.remove(path + ".partial")
    print(table(r))
    print(f"bench/ledger: results in {path}", file=sys.stderr)
    if not a.keep and not a.work:
        shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    main()
