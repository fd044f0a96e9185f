#!/usr/bin/env python3
"""Throughput of `countersign verify` (and `report`) on large signed histories.

    bench/perf/run.py [--sizes 1000,10000,100000] [--with-1m]
                      [--kinds ssh-ed25519,openpgp-ed25519,ssh-rsa3072,merges]
                      [--bin LABEL=PATH ...] [--runs 3] [--work DIR]
                      [--json FILE] [--backtrace]

For each kind and size it makes a history with examples/gen_history.rs
(kept in --work and reused by later runs), checks it with git itself (the
newest commit re-made by `git commit-tree -S` must have the same id for SSH
kinds; `git verify-commit` must accept a sample of commits), then times
`countersign verify` with each --bin (median of --runs, the binaries'
runs interleaved; CPU time and max RSS of the child from wait4) and a
`git verify-commit` loop over a sample of commits, and prints a table and
JSON. On `merges` histories it also times
`countersign report`. The outputs of every --bin must be identical (the
report's generation time aside); a difference is printed as an error.

--with-1m adds 1,000,000 commits (SSH ed25519 only). --backtrace repeats the
verify runs with RUST_BACKTRACE=1 in the environment. --hook also times
`countersign hook pre-receive` deciding the creation of main with the whole
history (histories up to --hook-max commits). Needs git, ssh-keygen
and gpg; builds the release binary and the generator unless --no-build.
Timing belongs here, never in tests.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(SRC, "target", "release", "examples", "gen_history")
BIN = os.path.join(SRC, "target", "release", "countersign")
BASE_TIME = 1_700_000_000
REF = "refs/heads/main"


def sh(args, cwd=None, env=None, check=True, capture=True, stdin=None):
    p = subprocess.run(args, cwd=cwd, env=env, stdin=stdin,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if check and p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(args)}\n"
                 f"{(p.stdout or b'').decode(errors='replace')}"
                 f"{(p.stderr or b'').decode(errors='replace')}")
    return p


def timed_rss(args, cwd, env, out_path, stdin=None):
    """Run args with stdout+stderr to a file; (seconds, maxrss MB, code, CPU s)."""
    with open(out_path, "wb") as f:
        t0 = time.monotonic()
        p = subprocess.Popen(args, cwd=cwd, env=env, stdout=f, stderr=f,
                             stdin=subprocess.PIPE if stdin else None)
        if stdin:
            p.stdin.write(stdin)
            p.stdin.close()
        _, status, ru = os.wait4(p.pid, 0)
        t1 = time.monotonic()
        p.returncode = os.waitstatus_to_exitcode(status)
    return t1 - t0, ru.ru_maxrss / 1024.0, p.returncode, ru.ru_utime + ru.ru_stime


def base_env(work):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    env.update(HOME=work, GIT_CONFIG_NOSYSTEM="1", GNUPGHOME=os.path.join(work, "gnupg"),
               LC_ALL="C")
    return env


def ssh_key(work, name, kind):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        args = ["ssh-keygen", "-q", "-N", "", "-C", name, "-f", path]
        args += ["-t", "rsa", "-b", "3072"] if kind == "rsa" else ["-t", "ed25519"]
        sh(args)
    with open(path + ".pub") as f:
        return f.read().strip()


def pgp_key(work, env):
    """An ed25519 OpenPGP key made by gpg: (TSK path, cert path, fingerprint)."""
    tsk, cert = os.path.join(work, "dev.tsk"), os.path.join(work, "dev.asc")
    home = env["GNUPGHOME"]
    if not os.path.exists(tsk):
        os.makedirs(home, mode=0o700, exist_ok=True)
        # Made before the commits' dates, or no one accepts their signatures.
        sh(["gpg", "--batch", "--passphrase", "", f"--faked-system-time={BASE_TIME - 86400}!",
            "--quick-gen-key",
            "Bench <bench@example.com>", "ed25519", "sign", "never"], env=env)
        with open(tsk, "wb") as f:
            f.write(sh(["gpg", "--batch", "--armor", "--export-secret-keys"], env=env).stdout)
        with open(cert, "wb") as f:
            f.write(sh(["gpg", "--batch", "--armor", "--export"], env=env).stdout)
    out = sh(["gpg", "--batch", "--with-colons", "--list-keys"], env=env).stdout.decode()
    fpr = re.search(r"^fpr:+([0-9A-F]+):", out, re.M).group(1)
    return tsk, cert, fpr


def person(pid, roles, ssh=None, openpgp=None):
    s = f'[people.{pid}]\nname = "{pid}"\nroles = {json.dumps(roles)}\n'
    if ssh:
        s += f"ssh = [{json.dumps(ssh)}]\n"
    if openpgp:
        s += f"openpgp = [{json.dumps(openpgp)}]\n"
    return s + "\n"


def make_history(work, kind, n, env):
    """Generate (or reuse) the history; return its directory."""
    d = os.path.join(work, f"{kind}-{n}")
    if os.path.exists(os.path.join(d, "done")):
        return d
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    repo = os.path.join(d, "repo")
    sh(["git", "init", "-q", "-b", "main", repo], env=env)
    gen = [GEN, "--repo", repo, "--count", str(n), "--base-time", str(BASE_TIME)]
    roles = '[roles]\ndeveloper = "writes code"\nreviewer = "reviews"\nmaintainer = "merges"\n\n'
    if kind in ("ssh-ed25519", "ssh-rsa3072"):
        pub = ssh_key(work, "dev-rsa" if kind == "ssh-rsa3072" else "dev",
                      "rsa" if kind == "ssh-rsa3072" else "ed25519")
        key = os.path.join(work, "dev-rsa" if kind == "ssh-rsa3072" else "dev")
        gen += ["--kind", "ssh", "--key", key]
        people = person("dev", ["developer"], ssh=pub)
        rule = '[[rule]]\nrefs = ["refs/heads/main"]\ncommit-signers = ["developer"]\n'
    elif kind == "openpgp-ed25519":
        tsk, cert, _ = pgp_key(work, env)
        gen += ["--kind", "openpgp", "--key", tsk]
        people = person("dev", ["developer"], openpgp=cert)
        rule = '[[rule]]\nrefs = ["refs/heads/main"]\ncommit-signers = ["developer"]\n'
    elif kind == "merges":
        keys = {k: ssh_key(work, k, "ed25519") for k in ("dev", "maint", "rev1", "rev2")}
        gen += ["--kind", "merges", "--key", os.path.join(work, "dev"),
                "--maintainer-key", os.path.join(work, "maint"),
                "--reviewer-key", os.path.join(work, "rev1"),
                "--reviewer-key", os.path.join(work, "rev2")]
        people = (person("dev", ["developer"], ssh=keys["dev"])
                  + person("maint", ["maintainer"], ssh=keys["maint"])
                  + person("rev1", ["reviewer"], ssh=keys["rev1"])
                  + person("rev2", ["reviewer"], ssh=keys["rev2"]))
        rule = None
    else:
        sys.exit(f"unknown kind {kind}")
    t0 = time.monotonic()
    out = sh(gen, env=env).stdout.decode()
    gen_s = time.monotonic() - t0
    if kind == "merges":
        root = re.search(r"^root (\w+)", out, re.M).group(1)
        rule = ('[[rule]]\nname = "main"\nrefs = ["refs/heads/main"]\n'
                'commit-signers = ["developer", "maintainer"]\n'
                f'baseline = "{root}"\n\n[rule.merge]\nsigners = ["maintainer"]\n'
                'approvals = [{ role = "reviewer", count = 2 }]\n')
    with open(os.path.join(d, "policy.toml"), "w") as f:
        f.write(f'[repository]\nid = "bench/repo"\n\n{roles}{people}{rule}')
    check_with_git(d, kind, n, env)
    with open(os.path.join(d, "done"), "w") as f:
        f.write(f"{gen_s:.3f}\n")
    return d


def git_env(d, kind, env):
    """git configured to sign and verify as the generator did."""
    repo = os.path.join(d, "repo")
    work = os.path.dirname(d)
    allowed = os.path.join(d, "allowed_signers")
    with open(allowed, "w") as f:
        for name in ("dev", "dev-rsa", "maint", "rev1", "rev2"):
            p = os.path.join(work, name + ".pub")
            if os.path.exists(p):
                with open(p) as k:
                    f.write(f"bench@example.com {k.read().strip()}\n")
    sh(["git", "config", "gpg.ssh.allowedSignersFile", allowed], cwd=repo, env=env)
    if kind.startswith("ssh"):
        key = os.path.join(work, "dev-rsa" if kind == "ssh-rsa3072" else "dev")
        sh(["git", "config", "gpg.format", "ssh"], cwd=repo, env=env)
        sh(["git", "config", "user.signingkey", key], cwd=repo, env=env)
    return repo


def sample(repo, env, count):
    ids = sh(["git", "rev-list", "main"], cwd=repo, env=env).stdout.decode().split()
    step = max(1, len(ids) // count)
    return ids[::step][:count]


def check_with_git(d, kind, n, env):
    repo = git_env(d, kind, env)
    for c in sample(repo, env, 5):
        sh(["git", "verify-commit", c], cwd=repo, env=env)
    if kind.startswith("ssh"):
        # The newest commit, re-made by git with the same key and dates.
        i = n - 1
        t = f"{BASE_TIME + i} +0000"
        e = dict(env, GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.com",
                 GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.com",
                 GIT_AUTHOR_DATE=t, GIT_COMMITTER_DATE=t)
        tree = sh(["git", "rev-parse", "main^{tree}"], cwd=repo, env=e).stdout.decode().strip()
        parent = sh(["git", "rev-parse", "main^"], cwd=repo, env=e).stdout.decode().strip()
        made = sh(["git", "commit-tree", "-S", "-p", parent, "-m", f"commit {i}", tree],
                  cwd=repo, env=e).stdout.decode().strip()
        tip = sh(["git", "rev-parse", "main"], cwd=repo, env=e).stdout.decode().strip()
        if made != tip:
            sys.exit(f"{kind}-{n}: git commit-tree -S made {made}, the generator {tip}")


def git_loop(d, kind, env, count):
    """commits/s of `git verify-commit`, one process per commit, on a sample."""
    repo = git_env(d, kind, env)
    ids = sample(repo, env, count)
    t0 = time.monotonic()
    for c in ids:
        sh(["git", "verify-commit", c], cwd=repo, env=env)
    return len(ids) / (time.monotonic() - t0)


def normalized(path):
    with open(path, "rb") as f:
        data = f.read()
    # The report's generation time is the only thing allowed to differ.
    data = re.sub(rb'"generated_at(_utc)?": *("[^"]*"|\d+)', b"", data)
    return hashlib.sha256(data).hexdigest()


def command(d, binary, what, env):
    """(args, env, stdin) of one timed command on the history in d."""
    repo = os.path.join(d, "repo")
    policy = os.path.join(d, "policy.toml")
    stdin = None
    if what == "report":
        args = [binary, "report", "--ref", "main", "--format", "json", "--policy", policy]
    elif what == "hook":
        # The hook deciding the creation of main with the whole history,
        # as for a push of n new commits: a bare repository without refs
        # that borrows the history's objects (objects/info/alternates,
        # as git's quarantine does), the policy in its countersign.policy.
        bare = os.path.join(d, "hook.git")
        if not os.path.exists(bare):
            sh(["git", "init", "-q", "--bare", bare], env=env)
            with open(os.path.join(bare, "objects", "info", "alternates"), "w") as f:
                f.write(os.path.join(repo, ".git", "objects") + "\n")
            sh(["git", "config", "countersign.policy", policy], cwd=bare, env=env)
        tip = sh(["git", "rev-parse", "main"], cwd=repo, env=env).stdout.decode().strip()
        stdin = f"{'0' * len(tip)} {tip} {REF}\n".encode()
        args = [binary, "hook", "pre-receive"]
        env = dict(env, GIT_DIR=bare)
    else:
        args = [binary, "verify", "main", "--ref", REF, "--policy", policy]
    return args, env, stdin


def measure_all(d, n, configs, runs, results, digests):
    """Time every (label, binary, what, env) config, runs interleaved (so a
    change of load on a shared machine hits every binary alike); one row
    each: median wall time, max RSS, median CPU time."""
    repo = os.path.join(d, "repo")
    times = {c[0] + c[2]: [] for c in configs}
    cpus = {c[0] + c[2]: [] for c in configs}
    rss = {c[0] + c[2]: [] for c in configs}
    for _ in range(runs):
        for label, binary, what, env in configs:
            print(f"#   {label} {what}", file=sys.stderr, flush=True)
            args, e, stdin = command(d, binary, what, env)
            out_path = os.path.join(d, f"out-{what}-{label}.txt")
            s, m, code, cpu = timed_rss(args, repo, e, out_path, stdin)
            if code != 0:
                with open(out_path, errors="replace") as f:
                    sys.exit(f"{label} {what} failed ({code}) on {d}:\n{f.read()[:2000]}")
            times[label + what].append(s)
            cpus[label + what].append(cpu)
            rss[label + what].append(m)
    rows = []
    for label, _, what, _ in configs:
        out_path = os.path.join(d, f"out-{what}-{label}.txt")
        key = (d, what)
        digest = normalized(out_path)
        if what == "hook":
            pass  # its text names the audit record, which differs per run
        elif key in digests and digests[key][1] != digest:
            print(f"ERROR: {what} output of {label} differs from {digests[key][0]} on {d}",
                  file=sys.stderr)
            results["mismatches"].append(
                {"history": d, "what": what, "bins": [digests[key][0], label]})
        digests.setdefault(key, (label, digest))
        t = times[label + what]
        med = statistics.median(t)
        rows.append({"bin": label, "command": what, "seconds": round(med, 4),
                     "commits_per_s": round(n / med, 1),
                     "cpu_seconds": round(statistics.median(cpus[label + what]), 4),
                     "max_rss_mb": round(max(rss[label + what]), 1),
                     "runs": [round(x, 4) for x in t]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--with-1m", action="store_true")
    ap.add_argument("--kinds", default="ssh-ed25519,openpgp-ed25519,ssh-rsa3072,merges")
    ap.add_argument("--rsa-max", type=int, default=10000,
                    help="largest RSA history (signing RSA-3072 is slow)")
    ap.add_argument("--openpgp-max", type=int, default=100000)
    ap.add_argument("--merge-sizes", default="1000")
    ap.add_argument("--bin", action="append", default=[],
                    help="LABEL=PATH of a countersign binary (repeatable)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sample", type=int, default=30, help="commits for the git loop")
    ap.add_argument("--work", default="/tmp/countersign-bench")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--backtrace", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--hook", action="store_true",
                    help="also time `hook pre-receive` deciding the whole history as one push")
    ap.add_argument("--hook-max", type=int, default=10000,
                    help="largest history pushed to the hook (its `commits` limit is 20000)")
    a = ap.parse_args()

    if not a.no_build:
        env = dict(os.environ, CARGO_BUILD_JOBS=os.environ.get("CARGO_BUILD_JOBS", "1"))
        sh(["cargo", "build", "--release", "--locked", "--quiet", "--example", "gen_history",
            "--bin", "countersign"], cwd=SRC, env=env, capture=False)
    bins = [b.split("=", 1) for b in a.bin] or [["current", BIN]]
    os.makedirs(a.work, exist_ok=True)
    work = os.path.abspath(a.work)
    env = base_env(work)

    cases = []
    sizes = [int(s) for s in a.sizes.split(",") if s]
    for kind in a.kinds.split(","):
        if kind == "merges":
            cases += [(kind, int(s)) for s in a.merge_sizes.split(",") if s]
            continue
        limit = {"ssh-rsa3072": a.rsa_max, "openpgp-ed25519": a.openpgp_max}.get(kind)
        cases += [(kind, s) for s in sizes if limit is None or s <= limit]
        if kind == "ssh-ed25519" and a.with_1m:
            cases.append((kind, 1_000_000))

    results = {"machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname()),
                           "loadavg_start": os.getloadavg()},
               "rows": [], "mismatches": []}
    digests = {}
    for kind, n in cases:
        print(f"# {kind} {n}: generating / checking with git...", file=sys.stderr, flush=True)
        d = make_history(work, kind, n, env)
        commits = int(sh(["git", "rev-list", "--count", "main"], cwd=os.path.join(d, "repo"),
                         env=env).stdout)
        git_rate = git_loop(d, kind, env, a.sample)
        with open(os.path.join(d, "done")) as f:
            gen_s = float(f.read())
        configs = []
        for label, binary in bins:
            whats = ["verify"] + (["report"] if kind == "merges" else [])
            if a.hook and kind != "merges" and n <= a.hook_max:
                whats.append("hook")
            for what in whats:
                configs.append((label, binary, what, env))
                if a.backtrace and what == "verify":
                    configs.append((label + " RUST_BACKTRACE=1", binary, what,
                                    dict(env, RUST_BACKTRACE="1")))
        for r in measure_all(d, commits, configs, a.runs, results, digests):
            r.update(kind=kind, size=n, commits=commits,
                     git_verify_commit_per_s=round(git_rate, 1),
                     ratio_to_git=round(r["commits_per_s"] / git_rate, 1), generate_s=gen_s)
            results["rows"].append(r)

    results["machine"]["loadavg_end"] = os.getloadavg()
    print()
    print(f"load average at start {results['machine']['loadavg_start'][0]:.2f}, "
          f"at end {results['machine']['loadavg_end'][0]:.2f} ({os.cpu_count()} CPUs)")
    print()
    print("| history | commits | binary | command | time (median) | CPU time | commits/s "
          "| max RSS | git verify-commit loop | ratio |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results["rows"]:
        print(f"| {r['kind']} {r['size']} | {r['commits']} | {r['bin']} | {r['command']} "
              f"| {r['seconds']:.3f} s | {r['cpu_seconds']:.2f} s | {r['commits_per_s']:.0f} "
              f"| {r['max_rss_mb']:.0f} MB "
              f"| {r['git_verify_commit_per_s']:.0f}/s | {r['ratio_to_git']:.0f}x |")
    text = json.dumps(results, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    else:
        print()
        print(text)
    if results["mismatches"]:
        sys.exit("outputs differ between binaries (see above)")


if __name__ == "__main__":
    main()
