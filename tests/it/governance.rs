//! The policy under quorum: the policy lives on `refs/meta/countersign`,
//! pinned by a trust root; every change is judged by its parent's policy
//! (`[policy-changes]`: signed by an admin, approved by two other admins).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::util::*;

pub(crate) const PREF: &str = "refs/meta/countersign";

/// alice, bob, carol: admins; dave: developer; erin: known, no role.
pub(crate) struct Gov {
    pub(crate) sb: Sandbox,
    pub(crate) keys: HashMap<&'static str, Key>,
    pub(crate) clones: HashMap<&'static str, PathBuf>,
    pub(crate) root: String,
}

pub(crate) fn policy_text(people: &[String]) -> String {
    format!(
        r#"[repository]
id = "test/gov"

[roles]
developer = "writes code"
admin = "changes the policy"
maintainer = "ships"

{people}
[policy-changes]
signers = ["admin"]
approvals = [{{ role = "admin", count = 2 }}]

[[rule]]
name = "main"
refs = ["refs/heads/main"]
commit-signers = ["developer"]
"#,
        people = people.join("\n")
    )
}

impl Gov {
    pub(crate) fn new() -> Gov {
        Gov::new_with("")
    }

    /// As `new`, with `alice_key_extra` (e.g. `expires = ...`) on alice's key.
    pub(crate) fn new_with(alice_key_extra: &str) -> Gov {
        let mut sb = Sandbox::new();
        let mut keys = HashMap::new();
        for n in ["alice", "bob", "carol", "dave", "erin", "mallory"] {
            keys.insert(n, sb.ssh_key(n));
        }
        let people = vec![
            if alice_key_extra.is_empty() {
                simple_person("alice", &["admin"], &keys["alice"])
            } else {
                person(
                    "alice",
                    &["admin"],
                    &keys["alice"],
                    &keys["alice"].entry_with(alice_key_extra),
                    "",
                )
            },
            simple_person("bob", &["admin"], &keys["bob"]),
            simple_person("carol", &["admin"], &keys["carol"]),
            simple_person("dave", &["developer"], &keys["dave"]),
            person("erin", &[], &keys["erin"], &keys["erin"].entry(), ""),
        ];
        sb.install(&policy_text(&people));
        create_main(&mut sb, &keys["dave"]);
        let out = sb.countersign(&sb.server.clone(), ["policy", "migrate"]);
        assert!(out.success, "migrate failed\n{out}");
        let root = sb
            .server_ref(PREF)
            .expect("the policy ref exists after migrate");
        assert_eq!(
            sb.server_git_ok(["config", "countersign.policyRoot"]),
            root,
            "migrate pins the root"
        );
        let mut g = Gov {
            sb,
            keys,
            clones: HashMap::new(),
            root,
        };
        for n in ["alice", "bob", "carol", "dave", "erin", "mallory"] {
            let dir = g.sb.clone_for(n, &format!("{n}@example.com"), &g.keys[n]);
            g.clones.insert(n, dir);
            g.fetch(n);
            let out = g.cs(n, &["policy", "pin", &g.root.clone()]);
            assert!(out.success, "pin failed\n{out}");
        }
        g
    }

    pub(crate) fn dir(&self, n: &str) -> &Path {
        &self.clones[n]
    }

    pub(crate) fn cs(&self, n: &str, args: &[&str]) -> Out {
        self.sb.countersign_as(self.dir(n), &self.keys[n], args)
    }

    pub(crate) fn git(&self, n: &str, args: &[&str]) -> Out {
        self.sb.git_out_in(self.dir(n), Some(&self.keys[n]), args)
    }

    pub(crate) fn fetch(&self, n: &str) {
        let out = self.git(
            n,
            &[
                "fetch",
                "-q",
                "origin",
                "+refs/meta/countersign:refs/meta/countersign",
                "+refs/countersign/proposals/*:refs/countersign/proposals/*",
                "+refs/heads/*:refs/remotes/origin/*",
            ],
        );
        assert!(out.success, "fetch failed\n{out}");
    }

    /// `n` edits the policy with `edit` and proposes it as `name`.
    pub(crate) fn propose(&self, n: &str, name: &str, edit: impl Fn(String) -> String) -> String {
        self.fetch(n);
        let dir = self.dir(n).join(format!("edit-{name}"));
        let out = self.cs(n, &["policy", "edit", "--dir", dir.to_str().unwrap()]);
        assert!(out.success, "edit failed\n{out}");
        let file = dir.join("countersign.toml");
        let text = fs::read_to_string(&file).unwrap();
        fs::write(&file, edit(text)).unwrap();
        let out = self.cs(
            n,
            &[
                "policy",
                "propose",
                name,
                "--dir",
                dir.to_str().unwrap(),
                "-m",
                &format!("policy: {name}"),
                "--push",
                "origin",
            ],
        );
        assert!(out.success, "propose failed\n{out}");
        self.sb
            .server_ref(&format!("refs/countersign/proposals/{name}"))
            .expect("the proposal was pushed")
    }

    /// `n` approves proposal `name` (extra args to `approve`).
    pub(crate) fn approve(&self, n: &str, name: &str, extra: &[&str]) -> String {
        self.fetch(n);
        let p = format!("refs/countersign/proposals/{name}");
        let mut args = vec!["approve", p.as_str(), "--result", "--no-note"];
        if !extra.contains(&"--ref") {
            args.extend(["--ref", PREF]);
        }
        args.extend_from_slice(extra);
        let out = self.cs(n, &args);
        assert!(out.success, "approve failed\n{out}");
        out.stdout
            .lines()
            .find(|l| l.starts_with("Countersign-Approval:"))
            .unwrap_or_else(|| panic!("no trailer printed\n{out}"))
            .to_string()
    }

    /// `n` makes the landing commit of `proposal` (its parent and tree)
    /// carrying `trailers`, signed with `n`'s key, in `n`'s clone.
    pub(crate) fn landing(&self, n: &str, proposal: &str, trailers: &[String]) -> String {
        self.landing_on(n, proposal, &format!("{proposal}^"), trailers)
    }

    pub(crate) fn landing_on(
        &self,
        n: &str,
        proposal: &str,
        parent: &str,
        trailers: &[String],
    ) -> String {
        self.fetch(n);
        let mut msg = "policy change\n\n".to_string();
        for t in trailers {
            msg.push_str(t);
            msg.push('\n');
        }
        let tree = format!("{proposal}^{{tree}}");
        let mut args = self.keys[n].sign_args();
        args.extend(
            [
                "commit-tree",
                tree.as_str(),
                "-p",
                parent,
                "-S",
                "-m",
                msg.as_str(),
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.git(n, &args);
        assert!(out.success, "commit-tree failed\n{out}");
        out.stdout.trim().to_string()
    }

    /// A proposal made by hand (for what `policy propose` refuses): the
    /// policy ref's tree with `countersign.toml` replaced by `text`, pushed
    /// as `refs/countersign/proposals/<name>`.
    pub(crate) fn hand_proposal(&self, n: &str, name: &str, text: &[u8]) -> String {
        self.fetch(n);
        let dir = self.dir(n);
        let blob = self
            .sb
            .git_stdin_in(dir, &["hash-object", "-w", "--stdin"], text);
        let entry = format!("100644 blob {blob}\tcountersign.toml\n");
        let tree = self.sb.git_stdin_in(dir, &["mktree"], entry.as_bytes());
        let out = self.git(n, &["commit-tree", tree.as_str(), "-p", PREF, "-m", name]);
        assert!(out.success, "{out}");
        let id = out.stdout.trim().to_string();
        let out = self.git(
            n,
            &[
                "push",
                "-q",
                "origin",
                &format!("{id}:refs/countersign/proposals/{name}"),
            ],
        );
        assert!(out.success, "proposals may be pushed\n{out}");
        id
    }

    pub(crate) fn policy_now(&self) -> String {
        self.sb
            .server_git_ok(["show", &format!("{PREF}:countersign.toml")])
    }

    pub(crate) fn push_policy(&self, n: &str, commit: &str) -> Out {
        self.git(n, &["push", "origin", &format!("{commit}:{PREF}")])
    }
}

pub(crate) fn grant(role: &'static str, who: &'static str) -> impl Fn(String) -> String {
    move |text: String| {
        let header = format!("[people.{who}]\n");
        let start = text.find(&header).expect("person in policy");
        let roles_at = start + text[start..].find("roles = [").unwrap() + "roles = [".len();
        let mut t = text.clone();
        let close = roles_at + text[roles_at..].find(']').unwrap();
        let inner = text[roles_at..close].trim().to_string();
        let new = if inner.is_empty() {
            format!("\"{role}\"")
        } else {
            format!("{inner}, \"{role}\"")
        };
        t.replace_range(roles_at..close, &new);
        t
    }
}

/// An admin's change with two other admins' approvals lands through
/// `policy apply`, and the very next push is judged by the new policy.
#[test]
fn governance_approved_change_lands_and_rules_the_next_push() {
    let g = Gov::new();
    // erin holds no role: her commit on main is refused.
    let erin = g.dir("erin").to_path_buf();
    g.sb.git_ok_in(&erin, ["checkout", "-q", "-B", "main", "origin/main"]);
    let c =
        g.sb.commit_in(&erin, Some(&g.keys["erin"]), "e.txt", "by erin");
    let out = g.git("erin", &["push", "origin", "main"]);
    assert_rejected_with(&out, "signer-lacks-role");

    let p = g.propose("alice", "erin-dev", grant("developer", "erin"));
    for n in ["bob", "carol"] {
        g.fetch(n);
        let p_ref = "refs/countersign/proposals/erin-dev";
        let out = g.cs(
            n,
            &[
                "approve", p_ref, "--ref", PREF, "--result", "--push", "origin",
            ],
        );
        assert!(out.success, "approve failed\n{out}");
    }
    let out = g.cs(
        "alice",
        &["policy", "apply", "erin-dev", "--push", "origin"],
    );
    assert!(out.success, "apply failed\n{out}");
    let tip = g.sb.server_ref(PREF).unwrap();
    assert_ne!(tip, g.root);
    assert_eq!(
        g.sb.server_git_ok(["rev-parse", &format!("{tip}^{{tree}}")]),
        g.sb.server_git_ok(["rev-parse", &format!("{p}^{{tree}}")])
    );

    // The next push uses the new grant.
    let out = g.git("erin", &["push", "origin", "main"]);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "{out}"
    );
    g.sb.assert_server_ref(MAIN, Some(&c));

    // The audit record names the policy commit it was decided under.
    let log = fs::read_to_string(g.sb.server.join("countersign/audit.log")).unwrap();
    let last = log.lines().last().unwrap();
    assert!(
        squash(last).contains(&format!("\"commit\":\"{tip}\"")),
        "{last}"
    );

    // `policy log` shows who signed, who approved, and the grant.
    let out = g.cs("dave", &["policy", "log"]);
    g.fetch("dave");
    let out2 = g.cs("dave", &["policy", "log"]);
    assert!(out2.success, "{out}\n{out2}");
    assert!(out2.stdout.contains("signed by alice"), "{out2}");
    assert!(
        out2.stdout.contains("approved by bob, carol")
            || out2.stdout.contains("approved by carol, bob"),
        "{out2}"
    );
    assert!(
        out2.stdout.contains("+ `erin` holds role `developer`"),
        "{out2}"
    );

    // A clone with no pinned root verifies main by the policy ref with
    // --trust-root; by the old policy file, erin's commit is refused.
    g.sb.git_ok([
        "fetch",
        "-q",
        "origin",
        "+refs/meta/countersign:refs/meta/countersign",
        "+refs/heads/main:refs/remotes/origin/main",
    ]);
    let root = g.root.clone();
    let out = g.sb.countersign(
        &g.sb.work,
        [
            "verify",
            "origin/main",
            "--ref",
            "refs/heads/main",
            "--trust-root",
            root.as_str(),
        ],
    );
    assert!(out.success, "{out}");
    let file = g.sb.policy.display().to_string();
    let out = g.sb.countersign(
        &g.sb.work,
        [
            "verify",
            "origin/main",
            "--ref",
            "refs/heads/main",
            "--policy",
            file.as_str(),
        ],
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.all().contains("signer-lacks-role"), "{out}");
    let out = g.sb.countersign(
        &g.sb.work,
        [
            "verify",
            "origin/main",
            "--ref",
            "refs/heads/main",
            "--trust-root",
            "HEAD",
        ],
    );
    assert_eq!(out.code, Some(1), "a wrong root is refused\n{out}");

    // The evidence report lists the access change, with its approvers.
    let out = g.cs("dave", &["report", "--ref", "main"]);
    assert!(out.success, "{out}");
    assert!(out.stdout.contains("## Access changes"), "{out}");
    assert!(out.stdout.contains("Signed by: alice"), "{out}");
    assert!(
        out.stdout.contains("+ `erin` holds role `developer`"),
        "{out}"
    );
}

/// Every way around the quorum is refused by the hook.
#[test]
fn governance_changes_without_the_quorum_are_refused() {
    let g = Gov::new();
    let before = g.sb.server_ref(PREF);
    let check = |out: &Out, code: &str| {
        assert_rejected_with(out, code);
        assert_eq!(g.sb.server_ref(PREF), before, "the policy ref moved\n{out}");
    };

    // alice grants herself maintainer.
    let p = g.propose("alice", "self-grant", grant("maintainer", "alice"));
    let bob = g.approve("bob", "self-grant", &[]);
    let carol = g.approve("carol", "self-grant", &[]);
    let alice_own = g.approve("alice", "self-grant", &[]);

    // One approval short.
    let l = g.landing("alice", &p, std::slice::from_ref(&bob));
    check(&g.push_policy("alice", &l), "insufficient-approvals");
    // The author's own approval does not count.
    let l = g.landing("alice", &p, &[bob.clone(), alice_own.clone()]);
    check(&g.push_policy("alice", &l), "approver-is-author");
    // Signed by a non-admin, with two admin approvals.
    let l = g.landing("dave", &p, &[bob.clone(), carol.clone()]);
    check(&g.push_policy("dave", &l), "signer-lacks-role");
    // Approvals for another ref and another repository.
    let other_ref = g.approve("carol", "self-grant", &["--ref", "refs/heads/main"]);
    let l = g.landing("alice", &p, &[bob.clone(), other_ref]);
    check(&g.push_policy("alice", &l), "approval-wrong-ref");
    let other_repo = g.approve("carol", "self-grant", &["--repository", "other/repo"]);
    let l = g.landing("alice", &p, &[bob.clone(), other_repo]);
    check(&g.push_policy("alice", &l), "approval-wrong-repository");
    // Approvals of another proposal.
    let q = g.propose("alice", "other", grant("maintainer", "bob"));
    let bob_q = g.approve("bob", "other", &[]);
    let carol_q = g.approve("carol", "other", &[]);
    let l = g.landing("alice", &p, &[bob_q.clone(), carol_q.clone()]);
    check(&g.push_policy("alice", &l), "approval-wrong-commit");

    // Authorized only by the policy it introduces: mallory adds herself as
    // admin and signs the change.
    let mallory_entry = simple_person("mallory", &["admin"], &g.keys["mallory"]);
    let m = g.propose("alice", "mallory", move |t| {
        t.replace(
            "[policy-changes]",
            &format!("{mallory_entry}\n[policy-changes]"),
        )
    });
    let b = g.approve("bob", "mallory", &[]);
    let c = g.approve("carol", "mallory", &[]);
    let l = g.landing("mallory", &m, &[b, c]);
    check(&g.push_policy("mallory", &l), "unknown-signer");

    // A change that leaves no quorum (bob and carol lose admin).
    let dropped = g
        .policy_now()
        .replace(
            "[people.bob]\nname = \"bob Example\"\nroles = [\"admin\"]",
            "[people.bob]\nname = \"bob Example\"\nroles = []",
        )
        .replace(
            "[people.carol]\nname = \"carol Example\"\nroles = [\"admin\"]",
            "[people.carol]\nname = \"carol Example\"\nroles = []",
        );
    assert_ne!(dropped, g.policy_now());
    let d = g.hand_proposal("alice", "drop", dropped.as_bytes());
    let b = g.approve("bob", "drop", &[]);
    let c = g.approve("carol", "drop", &[]);
    let l = g.landing("alice", &d, &[b, c]);
    check(&g.push_policy("alice", &l), "policy-quorum-lost");

    // An invalid policy, approved.
    let bad = g.hand_proposal("alice", "bad", b"[repository]\nid = \n");
    let b = g.approve("bob", "bad", &["--repository", "test/gov"]);
    let c = g.approve("carol", "bad", &["--repository", "test/gov"]);
    let l = g.landing("alice", &bad, &[b, c]);
    check(&g.push_policy("alice", &l), "policy-change-invalid");

    // A merge on the policy ref.
    let l1 = g.landing("alice", &p, &[bob.clone(), carol.clone()]);
    let l2 = g.landing("alice", &q, &[bob_q, carol_q]);
    let tree = format!("{l1}^{{tree}}");
    let mut args = g.keys["alice"].sign_args();
    args.extend(
        [
            "commit-tree",
            tree.as_str(),
            "-p",
            l1.as_str(),
            "-p",
            l2.as_str(),
            "-S",
            "-m",
            "merge",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let merge = g.git("alice", &args).stdout.trim().to_string();
    check(&g.push_policy("alice", &merge), "policy-ref-not-linear");

    // Deletion.
    let out = g.git("alice", &["push", "origin", &format!(":{PREF}")]);
    check(&out, "ref-deletion");

    // Other refs of countersign's own are refused; proposals are not.
    let out = g.git(
        "alice",
        &[
            "push",
            "origin",
            &format!("+{}:refs/countersign/log", before.clone().unwrap()),
        ],
    );
    assert_rejected_with(&out, "reserved-ref");

    // More policy commits in one push than the hook judges.
    let script = format!(
        "c=$(git rev-parse {PREF}); t=$(git rev-parse {PREF}^{{tree}}); for i in $(seq 101); do c=$(git commit-tree $t -p $c -m step$i); done; echo $c"
    );
    let mut sh = g.sb.cmd("sh");
    sh.current_dir(g.dir("alice")).args(["-c", &script]);
    let many = run(sh, None);
    assert!(many.success, "{many}");
    check(&g.push_policy("alice", many.stdout.trim()), "limit-commits");

    // The properly approved self-grant lands (bob and carol approved it).
    let l = g.landing("alice", &p, &[bob.clone(), carol.clone()]);
    let out = g.push_policy("alice", &l);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "{out}"
    );

    // Replay: the old policy again, as a non-fast-forward...
    let out = g.git(
        "alice",
        &["push", "-f", "origin", &format!("{}:{PREF}", g.root)],
    );
    assert_rejected_with(&out, "force-push");
    // ...and as a new commit with the old tree and the old approvals.
    let replay = {
        let tree = format!("{}^{{tree}}", g.root);
        let mut msg = "revert\n\n".to_string();
        msg.push_str(&bob);
        msg.push('\n');
        msg.push_str(&carol);
        msg.push('\n');
        let mut args = g.keys["alice"].sign_args();
        args.extend(
            [
                "commit-tree",
                tree.as_str(),
                "-p",
                l.as_str(),
                "-S",
                "-m",
                msg.as_str(),
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        g.git("alice", &args).stdout.trim().to_string()
    };
    let out = g.push_policy("alice", &replay);
    assert_rejected_with(&out, "approval-wrong-commit");
    g.sb.assert_server_ref(PREF, Some(&l));
}

/// A push that changes the policy and uses the new grant at once is
/// judged by the policy before the push.
#[test]
fn governance_a_push_is_judged_by_the_policy_before_it() {
    let g = Gov::new();
    let p = g.propose("alice", "erin", grant("developer", "erin"));
    let b = g.approve("bob", "erin", &[]);
    let c = g.approve("carol", "erin", &[]);
    let l = g.landing("alice", &p, &[b, c]);
    // alice pushes the policy change and erin's commit together.
    let alice = g.dir("alice").to_path_buf();
    g.sb.git_ok_in(&alice, ["checkout", "-q", "-B", "main", "origin/main"]);
    let e =
        g.sb.commit_in(&alice, Some(&g.keys["erin"]), "e.txt", "erin's work");
    let out = g.git(
        "alice",
        &[
            "push",
            "--atomic",
            "origin",
            &format!("{l}:{PREF}"),
            &format!("{e}:refs/heads/main"),
        ],
    );
    assert_rejected_with(&out, "signer-lacks-role");
    assert!(
        !out.stderr.contains("error[insufficient-approvals]"),
        "{out}"
    );
    // The policy change alone is accepted, and then erin's commit too.
    let out = g.push_policy("alice", &l);
    assert!(out.success, "{out}");
    let out = g.git("alice", &["push", "origin", "main"]);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "{out}"
    );
}

/// A policy ref moved around the hook breaks the chain: every push is
/// refused until the host operator re-pins (break glass, recorded).
#[test]
fn governance_unauthorized_ref_move_blocks_until_repin() {
    let mut g = Gov::new();
    // An unapproved change written straight into the server.
    let p = g.propose("alice", "sneaky", grant("developer", "erin"));
    g.sb.server_git_ok(["update-ref", PREF, &p]);
    let dave = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&dave, ["checkout", "-q", "-B", "main", "origin/main"]);
    g.sb.commit_in(&dave, Some(&g.keys["dave"]), "d.txt", "dave");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert_rejected_with(&out, "policy-ref-broken");
    // `policy log` in a clone that fetched it shows the unauthorized step.
    g.fetch("bob");
    let out = g.cs("bob", &["policy", "log"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains("NOT AUTHORIZED"), "{out}");
    // Break glass: the operator re-pins with a reviewed policy file.
    let fixed = g.sb.root().join("fixed.toml");
    fs::copy(&g.sb.policy, &fixed).unwrap();
    let out = g.sb.countersign(
        &g.sb.server.clone(),
        [
            "policy",
            "migrate",
            "--repin",
            "--policy",
            fixed.to_str().unwrap(),
        ],
    );
    assert!(out.success, "{out}");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "{out}"
    );
    let log = fs::read_to_string(g.sb.server.join("countersign/audit.log")).unwrap();
    assert!(log.contains("\"trust-root-repinned\""), "{log}");
    let out = g.sb.countersign(&g.sb.server.clone(), ["policy", "log"]);
    assert!(out.success, "{out}");
    assert!(
        out.stdout.contains("trust root RE-PINNED (break glass)"),
        "{out}"
    );
    g.root = g.sb.server_ref(PREF).unwrap();
}

/// File mode: a hand edit of the policy file shows up as a different
/// digest in the next audit record.
#[test]
fn governance_file_mode_records_the_policy_digest() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    sb.commit_as(Some(&dev), "one");
    assert_accepted(&sb.push(&["main"]));
    let policy = sb.policy.clone();
    let text = fs::read_to_string(&policy).unwrap();
    fs::write(&policy, format!("{text}\n# edited by hand\n")).unwrap();
    sb.commit_as(Some(&dev), "two");
    assert_accepted(&sb.push(&["main"]));
    let log = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    let digests: Vec<String> = log
        .lines()
        .filter_map(|l| l.split("\"sha256\":\"").nth(1).map(|r| r[..64].to_string()))
        .collect();
    assert!(digests.len() >= 2, "{log}");
    assert_ne!(
        digests[digests.len() - 1],
        digests[digests.len() - 2],
        "{log}"
    );
}

/// In policy ref mode, `people|keys|roles` edit the policy ref as a signed
/// proposal (`--propose`), and refuse to edit the unused policy file.
#[test]
fn governance_admin_commands_make_proposals() {
    let g = Gov::new();
    let server = g.sb.server.clone();
    let out =
        g.sb.countersign(&server, ["roles", "grant", "erin", "developer"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("--propose NAME"), "{out}");
    let out = g.cs("dave", &["roles", "list"]);
    assert!(out.success && out.stdout.contains("admin"), "{out}");
    let out = g.cs(
        "alice",
        &[
            "roles",
            "grant",
            "erin",
            "developer",
            "--propose",
            "erin",
            "--push",
            "origin",
        ],
    );
    assert!(out.success, "{out}");
    assert!(g.sb.server_ref("refs/countersign/proposals/erin").is_some());
    for n in ["bob", "carol"] {
        g.fetch(n);
        let out = g.cs(
            n,
            &[
                "approve",
                "refs/countersign/proposals/erin",
                "--ref",
                PREF,
                "--result",
                "--push",
                "origin",
            ],
        );
        assert!(out.success, "{out}");
    }
    let out = g.cs("alice", &["policy", "apply", "erin", "--push", "origin"]);
    assert!(out.success, "{out}");
    let text = g.policy_now();
    assert!(text.contains("[people.erin]"), "{text}");
    let erin = &text[text.find("[people.erin]").unwrap()..];
    assert!(
        erin.lines()
            .take(4)
            .any(|l| l.contains("roles = [\"developer\"]")),
        "{text}"
    );
}

/// `report` judges each change by the policy in force when it landed (per
/// the audit log), not by today's; without the log, by today's.
#[test]
fn governance_report_judges_by_the_policy_in_force_when_it_landed() {
    let g = Gov::new();
    // erin becomes a developer and lands a commit.
    let p = g.propose("alice", "erin-dev", grant("developer", "erin"));
    let b = g.approve("bob", "erin-dev", &[]);
    let c = g.approve("carol", "erin-dev", &[]);
    let l = g.landing("alice", &p, &[b, c]);
    assert!(g.push_policy("alice", &l).success);
    let granted = l.clone();
    let erin = g.dir("erin").to_path_buf();
    g.sb.git_ok_in(&erin, ["checkout", "-q", "-B", "main", "origin/main"]);
    let e =
        g.sb.commit_in(&erin, Some(&g.keys["erin"]), "e.txt", "erin's work");
    let out = g.git("erin", &["push", "origin", "main"]);
    assert!(out.success, "{out}");
    // Then the role is taken away again.
    let q = g.propose("alice", "erin-out", |t| {
        t.replace(
            "[people.erin]\nname = \"erin Example\"\nroles = [\"developer\"]",
            "[people.erin]\nname = \"erin Example\"\nroles = []",
        )
    });
    let b = g.approve("bob", "erin-out", &[]);
    let c = g.approve("carol", "erin-out", &[]);
    let l = g.landing("alice", &q, &[b, c]);
    assert!(g.push_policy("alice", &l).success);

    // On the server (its audit log): erin's change was compliant when it landed.
    let server = g.sb.server.clone();
    let out =
        g.sb.countersign(&server, ["report", "--ref", "main", "--format", "json"]);
    assert!(out.success, "{out}");
    let json = squash(&out.stdout);
    let at = json
        .find(&format!("\"commit\":\"{e}\""))
        .expect("erin's change");
    let change = &json[at..];
    assert!(
        change.contains(&format!(
            "\"judged_by\":\"refs/meta/countersign@{granted}\""
        )),
        "{}",
        &change[..change.len().min(600)]
    );
    assert!(
        change[..400].contains("\"status\":\"compliant\""),
        "{change}"
    );
    // In a clone without the log: judged by today's policy, an exception.
    g.fetch("dave");
    let dave = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&dave, ["checkout", "-q", "-B", "main", "origin/main"]);
    let out = g.cs("dave", &["report", "--ref", "main", "--format", "json"]);
    let json = squash(&out.stdout);
    let at = json
        .find(&format!("\"commit\":\"{e}\""))
        .expect("erin's change");
    assert!(json[at..].contains("signer-lacks-role"), "{out}");
    // A log that does not verify is refused.
    let log = g.sb.server.join("countersign/audit.log");
    let text = fs::read_to_string(&log).unwrap();
    fs::write(
        &log,
        text.replacen("\"verdict\":\"accepted\"", "\"verdict\":\"accepted \"", 1),
    )
    .unwrap();
    let out = g.sb.countersign(&server, ["report", "--ref", "main"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("does not verify"), "{out}");
}
