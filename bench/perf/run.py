#!/usr/bin/env python3
"""Throughput of `countersign verify` (and `report`) on large signed histories.

    bench/perf/run.py [--sizes 1000,10000,100000] [--with-1m]
                      [--kinds ssh-ed25519,openpgp-ed25519,ssh-rsa3072,merges]
                      [--bin LABEL=PATH ...] [--runs 3] [--work DIR]
                      [--json FILE] [--backtrace] [--hook]
                      [--no-warm] [--no-incremental] [--cold-only LABEL]
                      [--sq-git PATH | --no-sq-git]

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

Every timed run starts from a cache state the row defines, set up before
the clock starts (the persistent verification cache lives in
`<git dir>/countersign/cache`; a binary without it ignores the directory):
- `verify`, `report`, `hook`: cold, the cache directory deleted first.
- `verify warm`, `report warm` (merges), `hook warm` (--hook): with the
  cache that one untimed run of the same command by the same binary left.
- `verify +100 warm` (linear kinds): the history has a second ref,
  refs/heads/plus100, 100 more signed commits of the same kind on top of
  main (commits n..n+99, made by gen_history --parent/--start); the cache
  is the one an untimed `verify main` left, and the timed run verifies
  plus100 (for refs/heads/main): what a push of 100 commits costs.
The cache a fill run leaves is kept aside per binary and row and copied
back before each timed run, so the binaries' interleaved runs never see
each other's cache. --no-warm drops the warm and +100 rows,
--no-incremental only the +100 rows.

With sequoia-git's `sq-git` (on PATH or --sq-git PATH; --no-sq-git skips
it), OpenPGP histories also time `sq-git log --trust-root ROOT main`
(label sq-git; rows `log`, `log warm`, `log +100 warm`, the cache being
sq-git's own `$XDG_CACHE_HOME/sq-git.verification.cache`, handled as
above), and every countersign row on them gets its speed ratio to the
sq-git row of the same state. The OpenPGP histories carry sq-git's
in-band policy (`openpgp-policy.toml`, authorizing the bench key to sign
commits) in every tree, so both tools check the same commits; sq-git
trusts the root commit and authenticates the n-1 commits after it.
Before timing, sq-git (and each --bin) is checked to accept a small good
OpenPGP history and to reject it with one commit's signature broken.

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


LINEAR = ("ssh-ed25519", "openpgp-ed25519", "ssh-rsa3072")
PLUS_REF = "refs/heads/plus100"
PLUS_N = 100
SQ_POLICY = "openpgp-policy.toml"


def sq_git_policy(work, env):
    """sequoia-git's policy file authorizing the bench OpenPGP key to sign
    commits (the format `sq-git policy authorize --sign-commit` writes);
    put in every tree of the OpenPGP histories."""
    _, cert, _ = pgp_key(work, env)
    with open(cert) as f:
        armored = f.read().strip()
    text = ('version = 0\ncommit_goodlist = []\n\n'
            '[authorization."Bench <bench@example.com>"]\n'
            f'sign_commit = true\nkeyring = """\n{armored}\n"""\n')
    path = os.path.join(work, SQ_POLICY)
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)
    return path


def signer_args(work, kind, env):
    """(generator flags naming the signers, [people] of the policy, rule)."""
    if kind in ("ssh-ed25519", "ssh-rsa3072"):
        pub = ssh_key(work, "dev-rsa" if kind == "ssh-rsa3072" else "dev",
                      "rsa" if kind == "ssh-rsa3072" else "ed25519")
        key = os.path.join(work, "dev-rsa" if kind == "ssh-rsa3072" else "dev")
        gen = ["--kind", "ssh", "--key", key]
        people = person("dev", ["developer"], ssh=pub)
        rule = '[[rule]]\nrefs = ["refs/heads/main"]\ncommit-signers = ["developer"]\n'
    elif kind == "openpgp-ed25519":
        tsk, cert, _ = pgp_key(work, env)
        gen = ["--kind", "openpgp", "--key", tsk,
               "--tree-file", f"{SQ_POLICY}={sq_git_policy(work, env)}"]
        people = person("dev", ["developer"], openpgp=cert)
        rule = '[[rule]]\nrefs = ["refs/heads/main"]\ncommit-signers = ["developer"]\n'
    elif kind == "merges":
        keys = {k: ssh_key(work, k, "ed25519") for k in ("dev", "maint", "rev1", "rev2")}
        gen = ["--kind", "merges", "--key", os.path.join(work, "dev"),
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
    return gen, people, rule


def has_sq_policy(d, env):
    return sh(["git", "cat-file", "-e", f"main:{SQ_POLICY}"], cwd=os.path.join(d, "repo"),
              env=env, check=False).returncode == 0


def make_history(work, kind, n, env):
    """Generate (or reuse) the history; return its directory."""
    d = os.path.join(work, f"{kind}-{n}")
    if os.path.exists(os.path.join(d, "done")):
        if kind != "openpgp-ed25519" or has_sq_policy(d, env):
            return d
        # Made before the OpenPGP histories carried sq-git's policy.
        print(f"# {kind} {n}: made without {SQ_POLICY}, generating it again",
              file=sys.stderr, flush=True)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    repo = os.path.join(d, "repo")
    sh(["git", "init", "-q", "-b", "main", repo], env=env)
    roles = '[roles]\ndeveloper = "writes code"\nreviewer = "reviews"\nmaintainer = "merges"\n\n'
    flags, people, rule = signer_args(work, kind, env)
    gen = [GEN, "--repo", repo, "--count", str(n), "--base-time", str(BASE_TIME)] + flags
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


def make_plus(d, kind, n, env):
    """refs/heads/plus100: PLUS_N more commits of the same kind on top of
    main (commits n..n+PLUS_N-1 of the same history), made once."""
    marker = os.path.join(d, "plus100-done")
    if os.path.exists(marker):
        return
    repo = os.path.join(d, "repo")
    flags, _, _ = signer_args(os.path.dirname(d), kind, env)
    sh([GEN, "--repo", repo, "--count", str(PLUS_N), "--base-time", str(BASE_TIME),
        "--parent", "refs/heads/main", "--start", str(n), "--ref", PLUS_REF] + flags, env=env)
    sh(["git", "merge-base", "--is-ancestor", "main", PLUS_REF], cwd=repo, env=env)
    got = int(sh(["git", "rev-list", "--count", "main.." + PLUS_REF], cwd=repo,
                 env=env).stdout)
    if got != PLUS_N:
        sys.exit(f"{d}: {PLUS_REF} has {got} commits over main, not {PLUS_N}")
    check_with_git(d, kind, n + PLUS_N, env, ref=PLUS_REF, count=3)
    with open(marker, "w") as f:
        f.write("ok\n")


def root_commit(d, env):
    return sh(["git", "rev-list", "--max-parents=0", "main"], cwd=os.path.join(d, "repo"),
              env=env).stdout.decode().split()[0]


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


def sample(repo, env, count, ref="main"):
    ids = sh(["git", "rev-list", ref], cwd=repo, env=env).stdout.decode().split()
    step = max(1, len(ids) // count)
    return ids[::step][:count]


def check_with_git(d, kind, n, env, ref="main", count=5):
    """git verify-commit accepts a sample of ref's commits; for SSH, git
    re-makes ref's tip, commit n-1, with the same id."""
    repo = git_env(d, kind, env)
    for c in sample(repo, env, count, ref):
        sh(["git", "verify-commit", c], cwd=repo, env=env)
    if kind.startswith("ssh"):
        # The newest commit, re-made by git with the same key and dates.
        i = n - 1
        t = f"{BASE_TIME + i} +0000"
        e = dict(env, GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.com",
                 GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.com",
                 GIT_AUTHOR_DATE=t, GIT_COMMITTER_DATE=t)
        tree = sh(["git", "rev-parse", ref + "^{tree}"], cwd=repo, env=e).stdout.decode().strip()
        parent = sh(["git", "rev-parse", ref + "^"], cwd=repo, env=e).stdout.decode().strip()
        made = sh(["git", "commit-tree", "-S", "-p", parent, "-m", f"commit {i}", tree],
                  cwd=repo, env=e).stdout.decode().strip()
        tip = sh(["git", "rev-parse", ref], cwd=repo, env=e).stdout.decode().strip()
        if made != tip:
            sys.exit(f"{d} {ref}: git commit-tree -S made {made}, the generator {tip}")


def git_loop(d, kind, env, count):
    """commits/s of `git verify-commit`, one process per commit, on a sample."""
    repo = git_env(d, kind, env)
    ids = sample(repo, env, count)
    t0 = time.monotonic()
    for c in ids:
        sh(["git", "verify-commit", c], cwd=repo, env=env)
    return len(ids) / (time.monotonic() - t0)


STATES = {"cold": "", "warm": " warm", "plus": " +100 warm"}


def safe(name):
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def sq_env(d, env):
    """sq-git's environment: its own Sequoia home, and its verification
    cache ($XDG_CACHE_HOME/sq-git.verification.cache) under d."""
    home = os.path.join(d, "sq-git", "home")
    cache = os.path.join(d, "sq-git", "xdg-cache")
    os.makedirs(home, exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    return dict(env, SEQUOIA_HOME=home, XDG_CACHE_HOME=cache)


def cache_path(d, what):
    """Where the command keeps its persistent cache (a directory for
    countersign, one file for sq-git)."""
    if what == "hook":
        return os.path.join(d, "hook.git", "countersign", "cache")
    if what == "log":
        return os.path.join(d, "sq-git", "xdg-cache", "sq-git.verification.cache")
    return os.path.join(d, "repo", ".git", "countersign", "cache")


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def copy(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copy2(src, dst)


def normalized(path):
    with open(path, "rb") as f:
        data = f.read()
    # The report's generation time is the only thing allowed to differ.
    data = re.sub(rb'"generated_at(_utc)?": *("[^"]*"|\d+)', b"", data)
    return hashlib.sha256(data).hexdigest()


def command(d, binary, what, env, target="main"):
    """(args, env, stdin) of one command on the history in d; target is
    the commit checked (main, or plus100 for the +100 rows)."""
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
        tip = sh(["git", "rev-parse", target], cwd=repo, env=env).stdout.decode().strip()
        stdin = f"{'0' * len(tip)} {tip} {REF}\n".encode()
        args = [binary, "hook", "pre-receive"]
        env = dict(env, GIT_DIR=bare)
    elif what == "log":
        # sq-git: authenticate target from the root commit (the trust
        # root) with the in-band policies.
        args = [binary, "log", "--trust-root", root_commit(d, env), target]
        env = sq_env(d, env)
    else:
        args = [binary, "verify", target, "--ref", REF, "--policy", policy]
    return args, env, stdin


def run_untimed(d, label, binary, what, env, target, tag):
    args, e, stdin = command(d, binary, what, env, target)
    out_path = os.path.join(d, f"out-{safe(tag)}-{safe(label)}.txt")
    _, _, code, _ = timed_rss(args, os.path.join(d, "repo"), e, out_path, stdin)
    return code, out_path


class CacheStates:
    """Sets the cache a timed run starts from: none (cold), or a copy of
    what one untimed run by the same binary left (warm: the same command;
    plus: `verify main` before timing `verify plus100`). The fill runs once
    per history, binary and row; its cache is kept in d/cache-snapshots and
    copied back before each timed run, so runs never inherit a cache from
    another binary or an earlier run."""

    def __init__(self, d):
        self.d = d
        self.snaps = os.path.join(d, "cache-snapshots")
        self.filled = {}
        remove(self.snaps)

    def prepare(self, label, binary, what, state, env):
        live = cache_path(self.d, what)
        remove(live)
        if state == "cold":
            return
        key = (label, what, state)
        snap = os.path.join(self.snaps, safe(label), safe(what + STATES[state]))
        if key not in self.filled:
            print(f"#   {label} {what}{STATES[state]}: filling the cache",
                  file=sys.stderr, flush=True)
            code, out = run_untimed(self.d, label, binary, what, env, "main",
                                    "fill-" + what + STATES[state])
            if code != 0:
                with open(out, errors="replace") as f:
                    sys.exit(f"{label} {what} (cache fill) failed ({code}) on {self.d}:\n"
                             f"{f.read()[:2000]}")
            self.filled[key] = os.path.lexists(live)
            if self.filled[key]:
                copy(live, snap)
            remove(live)
        if self.filled[key]:
            copy(snap, live)

    def clear(self):
        for what in ("verify", "hook", "log"):
            remove(cache_path(self.d, what))
        remove(self.snaps)


def measure_all(d, n, configs, runs, results, digests):
    """Time every config (label, binary, what, state, env), runs
    interleaved (so a change of load on a shared machine hits every binary
    alike), each from the cache state its row defines; one row each:
    median wall time, max RSS, median CPU time."""
    repo = os.path.join(d, "repo")
    caches = CacheStates(d)
    times, cpus, rss = {}, {}, {}
    try:
        for _ in range(runs):
            for label, binary, what, state, env in configs:
                row = what + STATES[state]
                print(f"#   {label} {row}", file=sys.stderr, flush=True)
                caches.prepare(label, binary, what, state, env)
                target = PLUS_REF if state == "plus" else "main"
                args, e, stdin = command(d, binary, what, env, target)
                out_path = os.path.join(d, f"out-{safe(row)}-{safe(label)}.txt")
                s, m, code, cpu = timed_rss(args, repo, e, out_path, stdin)
                if code != 0:
                    with open(out_path, errors="replace") as f:
                        sys.exit(f"{label} {row} failed ({code}) on {d}:\n{f.read()[:2000]}")
                times.setdefault((label, row), []).append(s)
                cpus.setdefault((label, row), []).append(cpu)
                rss.setdefault((label, row), []).append(m)
    finally:
        caches.clear()
    rows = []
    for label, _, what, state, _ in configs:
        row = what + STATES[state]
        out_path = os.path.join(d, f"out-{safe(row)}-{safe(label)}.txt")
        key = (d, row)
        digest = normalized(out_path)
        if what in ("hook", "log"):
            pass  # the hook's text names the audit record; sq-git is no --bin
        elif key in digests and digests[key][1] != digest:
            print(f"ERROR: {row} output of {label} differs from {digests[key][0]} on {d}",
                  file=sys.stderr)
            results["mismatches"].append(
                {"history": d, "what": row, "bins": [digests[key][0], label]})
        digests.setdefault(key, (label, digest))
        if state == "warm" and what != "hook":
            cold = os.path.join(d, f"out-{safe(what)}-{safe(label)}.txt")
            if os.path.exists(cold) and what != "log" and normalized(cold) != digest:
                note = f"{label}: `{row}` output differs from `{what}` (cold) on {d}"
                print(f"NOTE: {note}", file=sys.stderr)
                results["notes"].append(note)
        t = times[(label, row)]
        med = statistics.median(t)
        commits = n + (PLUS_N if state == "plus" else 0)
        rows.append({"bin": label, "command": row, "cache": state, "seconds": round(med, 4),
                     "commits": commits, "new_commits": PLUS_N if state == "plus" else commits,
                     "commits_per_s": round(commits / med, 1),
                     "cpu_seconds": round(statistics.median(cpus[(label, row)]), 4),
                     "max_rss_mb": round(max(rss[(label, row)]), 1),
                     "runs": [round(x, 4) for x in t]})
    return rows


def check_sq_git(work, sq, bins, env, results):
    """Both peers must really check: on a small OpenPGP history (40
    commits, sq-git's policy in every tree), sq-git and each --bin must
    accept main, and reject refs/heads/tampered: main's first 20 commits,
    then commit 19 with its message changed (so its signature no longer
    matches; git verify-commit must say so too), then commits 20..39 signed
    afresh on top of it. The rejection is checked with no cache and again
    with the cache that accepting main left."""
    d = make_history(work, "openpgp-ed25519", 40, env)
    repo = os.path.join(d, "repo")
    x = sh(["git", "rev-parse", "main~20"], cwd=repo, env=env).stdout.decode().strip()
    raw = sh(["git", "cat-file", "commit", x], cwd=repo, env=env).stdout
    if not raw.endswith(b"\n\ncommit 19\n"):
        sys.exit(f"{d}: unexpected commit 19:\n{raw.decode(errors='replace')}")
    p = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=repo,
                       env=env, input=raw[:-1] + b" tampered\n", capture_output=True, check=True)
    bad = p.stdout.decode().strip()
    if sh(["git", "verify-commit", bad], cwd=repo, env=env, check=False).returncode == 0:
        sys.exit(f"{d}: git verify-commit accepts the tampered commit {bad}")
    if sh(["git", "merge-base", "--is-ancestor", bad, "refs/heads/tampered"], cwd=repo,
          env=env, check=False).returncode != 0:
        flags, _, _ = signer_args(work, "openpgp-ed25519", env)
        sh([GEN, "--repo", repo, "--count", "20", "--base-time", str(BASE_TIME),
            "--parent", bad, "--start", "20", "--ref", "refs/heads/tampered"] + flags, env=env)
    sh(["git", "verify-commit", "tampered"], cwd=repo, env=env)  # its tip is well signed
    checks = []
    peers = ([("sq-git", sq, "log")] if sq else []) + [(l, b, "verify") for l, b in bins]
    for label, binary, what in peers:
        remove(cache_path(d, what))
        got = {}
        for name, fill in (("good", False), ("tampered", False),
                           ("tampered, with the cache good left", True)):
            remove(cache_path(d, what))
            if fill:
                run_untimed(d, label, binary, what, env, "main", "check-fill")
            target = "main" if name == "good" else "refs/heads/tampered"
            code, out = run_untimed(d, label, binary, what, env, target, "check-" + name)
            got[name] = code
        remove(cache_path(d, what))
        ok = got["good"] == 0 and all(c != 0 for k, c in got.items() if k != "good")
        checks.append({"bin": label, "exit_codes": got, "ok": ok})
        print(f"# check {label}: exit codes {got} -> {'ok' if ok else 'WRONG'}",
              file=sys.stderr, flush=True)
        if not ok:
            sys.exit(f"{label} does not tell the good history from the tampered one "
                     f"(exit codes {got}); see {out}")
    results["checks"] = checks


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
    ap.add_argument("--cold-only", action="append", default=[], metavar="LABEL",
                    help="time only cold runs of this --bin (a build without the cache)")
    ap.add_argument("--warm", action=argparse.BooleanOptionalAction, default=True,
                    help="also time with the cache one untimed run left (default: on)")
    ap.add_argument("--incremental", action=argparse.BooleanOptionalAction, default=True,
                    help=f"also time `verify` of {PLUS_N} new commits over a warm cache "
                         "(needs --warm; default: on)")
    ap.add_argument("--sq-git", metavar="PATH",
                    help="sequoia-git's sq-git (default: sq-git on PATH, if any)")
    ap.add_argument("--no-sq-git", action="store_true", help="do not time sq-git")
    a = ap.parse_args()

    if not a.no_build:
        env = dict(os.environ, CARGO_BUILD_JOBS=os.environ.get("CARGO_BUILD_JOBS", "1"))
        sh(["cargo", "build", "--release", "--locked", "--quiet", "--example", "gen_history",
            "--bin", "countersign"], cwd=SRC, env=env, capture=False)
    bins = [[lbl, os.path.abspath(p)] for lbl, p in (b.split("=", 1) for b in a.bin)] \
        or [["current", BIN]]
    os.makedirs(a.work, exist_ok=True)
    work = os.path.abspath(a.work)
    env = base_env(work)
    sq = None if a.no_sq_git else (a.sq_git or shutil.which("sq-git"))
    if sq:
        sq = os.path.abspath(sq)
        if not os.access(sq, os.X_OK):
            sys.exit(f"--sq-git {sq}: not an executable")

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
               "sq_git": sq, "rows": [], "mismatches": [], "notes": []}
    if sq and any(k == "openpgp-ed25519" for k, _ in cases):
        results["sq_git_version"] = " ".join(
            sh([sq, "version"], check=False).stderr.decode().split()[:2])
        print("# checking that sq-git and every --bin tell a good OpenPGP history "
              "from a tampered one...", file=sys.stderr, flush=True)
        check_sq_git(work, sq, bins, env, results)
    digests = {}
    for kind, n in cases:
        print(f"# {kind} {n}: generating / checking with git...", file=sys.stderr, flush=True)
        d = make_history(work, kind, n, env)
        commits = int(sh(["git", "rev-list", "--count", "main"], cwd=os.path.join(d, "repo"),
                         env=env).stdout)
        plus = a.warm and a.incremental and kind in LINEAR
        if plus:
            make_plus(d, kind, commits, env)
        git_rate = git_loop(d, kind, env, a.sample)
        with open(os.path.join(d, "done")) as f:
            gen_s = float(f.read())
        states = ["cold"] + (["warm"] if a.warm else [])
        configs = []
        for label, binary in bins:
            whats = ["verify"] + (["report"] if kind == "merges" else [])
            if a.hook and kind != "merges" and n <= a.hook_max:
                whats.append("hook")
            for what in whats:
                mine = states + (["plus"] if plus and what == "verify" else [])
                if label in a.cold_only:
                    mine = ["cold"]
                for state in mine:
                    configs.append((label, binary, what, state, env))
                if a.backtrace and what == "verify":
                    configs.append((label + " RUST_BACKTRACE=1", binary, what, "cold",
                                    dict(env, RUST_BACKTRACE="1")))
        if sq and kind == "openpgp-ed25519":
            for state in states + (["plus"] if plus else []):
                configs.append(("sq-git", sq, "log", state, env))
        rows = measure_all(d, commits, configs, a.runs, results, digests)
        peer = {r["cache"]: r["seconds"] for r in rows if r["bin"] == "sq-git"}
        for r in rows:
            r.update(kind=kind, size=n, git_verify_commit_per_s=round(git_rate, 1),
                     ratio_to_git=round(r["commits_per_s"] / git_rate, 1), generate_s=gen_s)
            if r["bin"] != "sq-git" and r["command"].startswith("verify") \
                    and r["cache"] in peer:
                # > 1: countersign is faster than sq-git on the same history
                # from the same cache state.
                r["sq_git_seconds"] = peer[r["cache"]]
                r["speed_ratio_to_sq_git"] = round(peer[r["cache"]] / r["seconds"], 2)
            results["rows"].append(r)

    results["machine"]["loadavg_end"] = os.getloadavg()
    print()
    print(f"load average at start {results['machine']['loadavg_start'][0]:.2f}, "
          f"at end {results['machine']['loadavg_end'][0]:.2f} ({os.cpu_count()} CPUs)")
    if sq:
        print(f"sq-git: {sq} ({results.get('sq_git_version', '?')})")
    print()
    print("| history | commits | binary | command | time (median) | CPU time | commits/s "
          "| max RSS | git verify-commit loop | ratio | vs sq-git |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results["rows"]:
        vs = f"{r['speed_ratio_to_sq_git']:.2f}x" if "speed_ratio_to_sq_git" in r else ""
        print(f"| {r['kind']} {r['size']} | {r['commits']} | {r['bin']} | {r['command']} "
              f"| {r['seconds']:.3f} s | {r['cpu_seconds']:.2f} s | {r['commits_per_s']:.0f} "
              f"| {r['max_rss_mb']:.0f} MB "
              f"| {r['git_verify_commit_per_s']:.0f}/s | {r['ratio_to_git']:.0f}x | {vs} |")
    summary = [r for r in results["rows"] if "speed_ratio_to_sq_git" in r]
    if summary:
        print()
        print("countersign / sq-git speed (sq-git time / countersign time; > 1: countersign "
              "is faster):")
        for r in summary:
            print(f"  {r['kind']} {r['size']} {r['bin']} {r['command']}: "
                  f"{r['speed_ratio_to_sq_git']:.2f}x "
                  f"({r['seconds']:.3f} s vs {r['sq_git_seconds']:.3f} s)")
    for note in results["notes"]:
        print(f"note: {note}")
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
