//! Helpers shared by the end-to-end modules: a sandbox with one
//! developer, and a team on a `[rule.merge]` ref.

use crate::util::*;

pub(crate) const MAIN: &str = "refs/heads/main";
pub(crate) const TAG: &str = "refs/tags/v1.0";

/// Commit signed by `dev` and push it to create `main` on the server.
/// Returns the commit id.
#[track_caller]
pub(crate) fn create_main(sb: &mut Sandbox, dev: &Key) -> String {
    let id = sb.commit_as(Some(dev), "initial");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&id));
    id
}

/// A sandbox with the standard policy and one SSH developer `dev`, plus
/// the extra people given, installed; `main` created by `dev`.
/// Returns (sandbox, dev, id of main).
pub(crate) fn with_dev(extra: impl FnOnce(&mut Sandbox) -> Vec<String>) -> (Sandbox, Key, String) {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let mut people = vec![simple_person("dev", &["developer"], &dev)];
    people.extend(extra(&mut sb));
    sb.install(&standard_policy(&people));
    let base = create_main(&mut sb, &dev);
    (sb, dev, base)
}

/// Is there `<file>:<line>:<digit>` in `text`?
pub(crate) fn has_location(text: &str, file: &str, line: usize) -> bool {
    let needle = format!("{file}:{line}:");
    text.match_indices(&needle).any(|(i, _)| {
        text[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

// ---- approvals and merges ----
//
// `[rule.merge]` on main: every change lands as a two-parent merge signed
// by a maintainer, carrying `Countersign-Approval:` trailers from distinct
// people in the required roles. Each person works in their own clone of
// the server, with their signing key in that clone's `.git/config` (as
// countersign reads it through libgit2). Approvals travel as git notes
// (`countersign approve --push origin`), or are copied by hand into
// hand-made merges to probe the hook directly.

pub(crate) const APPROVALS_2R_1S: &str =
    r#"approvals = [ { role = "reviewer", count = 2 }, { role = "security", count = 1 } ]"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ssh,
    Pgp,
}

/// One person of a team: id, roles, and their keys (the first key's name
/// is the id, a second one `<id>2`, ...).
pub(crate) struct Member {
    pub(crate) id: &'static str,
    pub(crate) roles: &'static [&'static str],
    pub(crate) keys: Vec<Kind>,
    /// Appended to the person's table, e.g. `revoked = 2020-01-01`.
    pub(crate) extra: &'static str,
}

pub(crate) fn member(id: &'static str, roles: &'static [&'static str], kind: Kind) -> Member {
    Member {
        id,
        roles,
        keys: vec![kind],
        extra: "",
    }
}

/// The usual team: alice writes code, bob and carol review (and may write
/// code), sam is the security reviewer, mia merges, dave only writes code.
pub(crate) fn usual_members(bob: Kind, carol: Kind, sam: Kind, mia: Kind) -> Vec<Member> {
    vec![
        member("alice", &["developer"], Kind::Ssh),
        member("bob", &["developer", "reviewer"], bob),
        member("carol", &["developer", "reviewer"], carol),
        member("sam", &["security"], sam),
        member("mia", &["maintainer"], mia),
        member("dave", &["developer"], Kind::Ssh),
    ]
}

/// A sandbox whose main is protected by a rule with `[rule.merge]`, a team
/// of people with keys, and one clone per key.
pub(crate) struct Team {
    pub(crate) sb: Sandbox,
    /// key name -> (person id, key)
    pub(crate) keys: std::collections::BTreeMap<String, (String, Key)>,
    /// The grandfathered first commit of main.
    pub(crate) base: String,
}

impl Team {
    /// Make the keys, write the policy (`merge` is the body of
    /// `[rule.merge]` after `signers`), make the first commit, set it as
    /// the rule's baseline, install, and push main (creation).
    pub(crate) fn new(members: &[Member], merge: &str) -> Team {
        Team::new_in(members, merge, &[])
    }

    /// As [`Team::new`], with extra `git init` arguments for the server
    /// (e.g. `--object-format=sha256`).
    pub(crate) fn new_in(members: &[Member], merge: &str, init_args: &[&str]) -> Team {
        let mut sb = if init_args.is_empty() {
            Sandbox::new()
        } else {
            Sandbox::new_with_init(init_args)
        };
        let mut keys = std::collections::BTreeMap::new();
        let mut people = Vec::new();
        for m in members {
            let mut mine = Vec::new();
            for (i, kind) in m.keys.iter().enumerate() {
                let name = if i == 0 {
                    m.id.to_string()
                } else {
                    format!("{}{}", m.id, i + 1)
                };
                let key = match kind {
                    Kind::Ssh => sb.ssh_key(&name),
                    Kind::Pgp => sb.gpg_key(&name),
                };
                keys.insert(name, (m.id.to_string(), key.clone()));
                mine.push(key);
            }
            // All of a person's keys are of one field kind in these tests,
            // or split across `ssh` and `openpgp`.
            let ssh: Vec<String> = mine
                .iter()
                .filter(|k| matches!(k, Key::Ssh { .. }))
                .map(Key::entry)
                .collect();
            let pgp: Vec<String> = mine
                .iter()
                .filter(|k| matches!(k, Key::OpenPgp { .. }))
                .map(Key::entry)
                .collect();
            let roles: Vec<String> = m.roles.iter().map(|r| format!("\"{r}\"")).collect();
            people.push(format!(
                "[people.{id}]\nname = \"{id} Example\"\nroles = [{roles}]\nssh = [{ssh}]\nopenpgp = [{pgp}]\n{extra}\n",
                id = m.id,
                extra = m.extra,
                roles = roles.join(", "),
                ssh = ssh.join(", "),
                pgp = pgp.join(", "),
            ));
        }
        let first = keys.values().next().unwrap().1.clone();
        let base = sb.commit_as(Some(&first), "initial");
        sb.install(&merge_rule_policy(
            "test/e2e",
            &people.join("\n"),
            &base,
            merge,
        ));
        let out = sb.push(&["main"]);
        assert_accepted(&out);
        sb.assert_server_ref(MAIN, Some(&base));
        Team { sb, keys, base }
    }

    /// The usual team and rule: 2 reviewers and 1 security approval.
    pub(crate) fn usual(bob: Kind, carol: Kind, sam: Kind, mia: Kind) -> Team {
        Team::new(&usual_members(bob, carol, sam, mia), APPROVALS_2R_1S)
    }

    pub(crate) fn key(&self, name: &str) -> &Key {
        &self.keys[name].1
    }

    /// The clone of the key `name` (made on first use), fetched.
    pub(crate) fn clone_of(&self, name: &str) -> std::path::PathBuf {
        let dir = self.sb.root().join(format!("c-{name}"));
        if !dir.exists() {
            let (person, key) = &self.keys[name];
            self.sb
                .clone_for(name, &format!("{person}@example.com"), key);
        }
        self.sb.git_ok_in(&dir, ["fetch", "-q", "origin"]);
        dir
    }

    /// In `name`'s clone: check out `branch` (from the server's branch, or
    /// from main if it does not exist), commit a change to `file` signed by
    /// `name`, push the branch. Returns the new tip.
    pub(crate) fn commit_on(&self, name: &str, branch: &str, file: &str) -> String {
        let dir = self.clone_of(name);
        let remote = format!("origin/{branch}");
        let from = if self
            .sb
            .git_out_in(&dir, None, ["rev-parse", "--verify", "-q", remote.as_str()])
            .success
        {
            remote
        } else {
            "origin/main".to_string()
        };
        self.sb
            .git_ok_in(&dir, ["checkout", "-q", "-B", branch, from.as_str()]);
        let id = self.sb.commit_in(
            &dir,
            Some(self.key(name)),
            file,
            &format!("{name} changes {file} on {branch}"),
        );
        let out = self.sb.git_out_in(&dir, None, ["push", "origin", branch]);
        assert_accepted(&out);
        self.sb
            .assert_server_ref(&format!("refs/heads/{branch}"), Some(&id));
        id
    }

    /// `countersign <args>` in `name`'s clone, signing as `name`.
    pub(crate) fn cs(&self, name: &str, args: &[&str]) -> Out {
        let dir = self.clone_of(name);
        self.sb.countersign_as(&dir, self.key(name), args)
    }

    /// `countersign approve <rev> --ref main --push origin <extra>` as
    /// `name`; asserts success and returns the trailer.
    #[track_caller]
    pub(crate) fn approve(&self, name: &str, rev: &str, extra: &[&str]) -> String {
        let mut args = vec!["approve", rev, "--ref", "main"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--no-note") {
            args.extend_from_slice(&["--push", "origin"]);
        }
        let out = self.cs(name, &args);
        assert_eq!(out.code, Some(0), "approve as {name} failed\n{out}");
        trailer_of(&out)
    }

    /// `name`'s clone on main, at the server's main, with the server's
    /// approval notes.
    pub(crate) fn on_main(&self, name: &str) -> std::path::PathBuf {
        let dir = self.clone_of(name);
        // No notes on the server yet is fine.
        self.sb.git_out_in(
            &dir,
            None,
            [
                "fetch",
                "-q",
                "origin",
                "+refs/notes/countersign:refs/notes/countersign",
            ],
        );
        self.sb
            .git_ok_in(&dir, ["checkout", "-q", "-B", "main", "origin/main"]);
        dir
    }

    /// A hand-made merge of `revs` into main in `name`'s clone, signed by
    /// `name`, with `trailers` as the last paragraph. Returns its id.
    pub(crate) fn hand_merge(&self, name: &str, revs: &[&str], trailers: &[String]) -> String {
        let dir = self.on_main(name);
        self.sb.merge_in(
            &dir,
            self.key(name),
            revs,
            &merge_message("Merge topic into main", trailers),
        )
    }

    /// `git push origin <args>` from `name`'s clone.
    pub(crate) fn push_from(&self, name: &str, args: &[&str]) -> Out {
        let dir = self.sb.root().join(format!("c-{name}"));
        let mut all = vec!["push", "origin"];
        all.extend_from_slice(args);
        self.sb.git_out_in(&dir, None, all)
    }

    /// The first-parent and second-parent of `id` in `name`'s clone.
    pub(crate) fn parents(&self, name: &str, id: &str) -> Vec<String> {
        let dir = self.sb.root().join(format!("c-{name}"));
        let line = self
            .sb
            .git_ok_in(&dir, ["rev-list", "--parents", "-n", "1", id]);
        line.split_whitespace().skip(1).map(String::from).collect()
    }

    /// Push main from `name`'s clone and assert it is rejected with `code`
    /// and the server's main did not move. Returns the push output.
    #[track_caller]
    pub(crate) fn push_main_rejected(&self, name: &str, code: &str) -> Out {
        let out = self.push_from(name, &["main"]);
        assert_rejected_with(&out, code);
        self.sb.assert_server_ref(MAIN, Some(&self.base));
        out
    }

    /// `countersign merge <topic>` as `name` on main: asserts exit 1 with
    /// `error[<code>]`, and that the clone's main and work tree are back
    /// where they were. Returns the output.
    #[track_caller]
    pub(crate) fn merge_refused(&self, name: &str, topic: &str, code: &str) -> Out {
        let dir = self.on_main(name);
        let before = self.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
        let out = self.cs(name, &["merge", topic]);
        assert_refused_with(&out, 1, code);
        assert_eq!(
            self.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]),
            before,
            "a refused merge moved main\n{out}"
        );
        assert_eq!(
            self.sb.git_ok_in(&dir, ["status", "--porcelain"]),
            "",
            "a refused merge left the work tree dirty\n{out}"
        );
        out
    }

    /// The three approvals the usual rule needs (bob, carol, sam) of `rev`.
    pub(crate) fn usual_approvals(&self, rev: &str) -> Vec<String> {
        ["bob", "carol", "sam"]
            .iter()
            .map(|n| self.approve(n, rev, &[]))
            .collect()
    }
}

/// The 1-based line of the first line of `text` containing `needle`.
pub(crate) fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle not in text")
        + 1
}

// ---- real servers (sshd, lighttpd, gitolite) ----

/// The OpenSSH public key line of an SSH test key.
pub(crate) fn public(key: &Key) -> &str {
    let Key::Ssh { public, .. } = key else {
        panic!("ssh key")
    };
    public
}

/// `GIT_SSH_COMMAND` for pushing with `key` to a test sshd on `port`.
pub(crate) fn ssh_command(key: &Key, port: u16) -> String {
    let Key::Ssh { private, .. } = key else {
        panic!("ssh key")
    };
    format!(
        "ssh -i {} -p {port} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        private.display()
    )
}

/// The last `push` record of the server's audit log.
pub(crate) fn last_push_record(sb: &Sandbox) -> serde_json::Value {
    let log = std::fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("\"kind\":\"push\""))
        .unwrap();
    serde_json::from_str(line).unwrap()
}
