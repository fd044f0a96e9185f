//! End-to-end tests of `countersign report`: a known history is made with
//! real git, ssh-keygen keys, the installed hook, `countersign approve` and
//! `countersign merge`, then the report is checked against it.
//!
//! The history of main, oldest first:
//! 1. `initial`, signed by alice: the rule's baseline (grandfathered);
//! 2. a merge of alice's topic, approved by bob (reviewer) and sam
//!    (security), merged by mia (maintainer) with `countersign merge`, and
//!    pushed through the hook: compliant;
//! 3. a direct, unsigned commit whose subject holds HTML/Markdown markup,
//!    made in mia's clone and never pushed: an exception
//!    (`unsigned-commit`, `merge-required`).

use std::path::{Path, PathBuf};

use crate::util::*;

const EVIL_SUBJECT: &str =
    "Hotfix <script>alert(1)</script> & \"quoted\" | [x](http://evil.example)";

struct History {
    sb: Sandbox,
    /// mia's clone, where main has all three changes.
    mia_dir: PathBuf,
    mia: Key,
    base: String,
    topic: String,
    merge: String,
    direct: String,
}

fn history() -> History {
    let mut sb = Sandbox::new();
    let alice = sb.ssh_key("alice");
    let bob = sb.ssh_key("bob");
    let sam = sb.ssh_key("sam");
    let mia = sb.ssh_key("mia");
    let people = [
        simple_person("alice", &["developer"], &alice),
        simple_person("bob", &["developer", "reviewer"], &bob),
        simple_person("sam", &["security"], &sam),
        simple_person("mia", &["maintainer"], &mia),
    ];
    let base = sb.commit_as(Some(&alice), "initial");
    sb.install(&merge_rule_policy(
        "test/report",
        &people.join("\n"),
        &base,
        r#"approvals = [ { role = "reviewer", count = 1 }, { role = "security", count = 1 } ]"#,
    ));
    assert_accepted(&sb.push(&["main"]));

    // alice writes the topic.
    let alice_dir = sb.clone_for("alice", "alice@example.com", &alice);
    sb.git_ok_in(&alice_dir, ["checkout", "-q", "-b", "topic", "origin/main"]);
    let topic = sb.commit_in(&alice_dir, Some(&alice), "feature.txt", "Add the feature");
    assert_accepted(&sb.git_out_in(&alice_dir, None, ["push", "origin", "topic"]));

    // bob and sam approve it.
    for (name, key) in [("bob", &bob), ("sam", &sam)] {
        let dir = sb.clone_for(name, &format!("{name}@example.com"), key);
        let out = sb.countersign_as(
            &dir,
            key,
            [
                "approve",
                topic.as_str(),
                "--ref",
                "main",
                "--push",
                "origin",
            ],
        );
        assert_eq!(out.code, Some(0), "approve as {name}\n{out}");
    }

    // mia merges it and pushes through the hook.
    let mia_dir = sb.clone_for("mia", "mia@example.com", &mia);
    sb.git_ok_in(
        &mia_dir,
        [
            "fetch",
            "-q",
            "origin",
            "+refs/notes/countersign:refs/notes/countersign",
        ],
    );
    let out = sb.countersign_as(&mia_dir, &mia, ["merge", "origin/topic"]);
    assert_eq!(out.code, Some(0), "countersign merge\n{out}");
    let merge = sb.git_ok_in(&mia_dir, ["rev-parse", "HEAD"]);
    assert_accepted(&sb.git_out_in(&mia_dir, None, ["push", "origin", "main"]));

    // A direct, unsigned commit (local only: the hook would refuse it).
    let direct = sb.commit_in(&mia_dir, None, "hotfix.txt", EVIL_SUBJECT);
    History {
        sb,
        mia_dir,
        mia,
        base,
        topic,
        merge,
        direct,
    }
}

impl History {
    fn report(&self, dir: &Path, args: &[&str]) -> Out {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        self.sb.countersign_as(dir, &self.mia, all)
    }

    #[track_caller]
    fn report_ok(&self, args: &[&str]) -> String {
        let out = self.report(&self.mia_dir, args);
        assert_eq!(out.code, Some(0), "report {args:?}\n{out}");
        out.stdout
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let text = self.report_ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"))
    }
}

fn short(id: &str) -> &str {
    &id[..12]
}

#[test]
fn report_markdown_and_json_match_the_history() {
    let h = history();
    let md = h.report_ok(&["--ref", "main"]);
    // Summary.
    assert!(
        md.starts_with("# Compliance evidence: refs/heads/main\n"),
        "{md}"
    );
    assert!(md.contains("| Changes | 3 |"), "{md}");
    assert!(md.contains("| Fully compliant | 1 of 2 (50.0%) |"), "{md}");
    assert!(md.contains("| With exceptions | 1 |"), "{md}");
    assert!(md.contains("| Grandfathered (not counted) | 1 |"), "{md}");
    assert!(
        md.contains("- Authors: alice (developer), 1 change(s)"),
        "{md}"
    );
    assert!(
        md.contains("- Approvers: bob (reviewer), 1 change(s); sam (security), 1 change(s)"),
        "{md}"
    );
    assert!(
        md.contains("- Mergers: mia (maintainer), 1 change(s)"),
        "{md}"
    );
    let d = short(&h.direct);
    assert!(
        md.contains(&format!("| `unsigned-commit` | 1 | `{d}` |")),
        "{md}"
    );
    assert!(
        md.contains(&format!("| `merge-required` | 1 | `{d}` |")),
        "{md}"
    );
    assert!(
        md.contains("re-verified from the repository's history"),
        "{md}"
    );
    // The changes, newest first.
    let pos = |needle: &str| {
        md.find(needle)
            .unwrap_or_else(|| panic!("no {needle}\n{md}"))
    };
    let (p1, p2, p3) = (
        pos(&format!("### 1. `{d}`")),
        pos(&format!(
            "### 2. `{}` Merge origin/topic into main",
            short(&h.merge)
        )),
        pos(&format!("### 3. `{}` initial", short(&h.base))),
    );
    assert!(p1 < p2 && p2 < p3, "{md}");
    let merge_md = &md[p2..p3];
    assert!(merge_md.contains("- Status: **compliant**"), "{merge_md}");
    assert!(
        merge_md.contains("- Merger: mia (maintainer)"),
        "{merge_md}"
    );
    assert!(
        merge_md.contains("- Tree: the clean merge of its parents"),
        "{merge_md}"
    );
    assert!(
        merge_md.contains(&format!(
            "  - `{}` Add the feature: signed by alice (developer)",
            short(&h.topic)
        )),
        "{merge_md}"
    );
    assert!(merge_md.contains("| bob | reviewer | "), "{merge_md}");
    assert!(merge_md.contains("| sam | security | "), "{merge_md}");
    assert!(
        merge_md.contains("  - rule #1 \"main\": compliant"),
        "{merge_md}"
    );
    let direct_md = &md[p1..p2];
    assert!(
        direct_md.contains("- Status: **EXCEPTIONS**"),
        "{direct_md}"
    );
    assert!(direct_md.contains("- Kind: direct commit"), "{direct_md}");
    assert!(
        direct_md.contains("- Signed by: not verified"),
        "{direct_md}"
    );
    assert!(
        direct_md.contains(&format!(
            "    - `unsigned-commit` at `{d}`: the commit is not signed"
        )),
        "{direct_md}"
    );
    assert!(
        direct_md.contains("    - `merge-required` at "),
        "{direct_md}"
    );
    // The subject's markup is escaped, never live.
    assert!(!md.contains("<script>"), "{md}");
    assert!(
        direct_md.contains("Hotfix \\<script\\>alert(1)\\</script\\> \\& \"quoted\" \\| \\[x\\](http://evil.example)"),
        "{direct_md}"
    );
    assert!(md[p3..].contains("- Status: **grandfathered"), "{md}");
    assert!(
        md[p3..].contains("- Signed by: not checked (grandfathered)"),
        "{md}"
    );

    // JSON: the same facts, stable field names.
    let j = h.json(&["--ref", "main"]);
    assert_eq!(j["format"], "countersign-evidence/1");
    assert_eq!(j["repository"], "test/report");
    assert_eq!(j["ref"], "refs/heads/main");
    assert_eq!(j["resolved_from"], "refs/heads/main");
    assert_eq!(j["tip"], h.direct.as_str());
    assert_eq!(j["since"], serde_json::Value::Null);
    assert_eq!(j["rules"], serde_json::json!(["rule #1 \"main\""]));
    let s = &j["summary"];
    assert_eq!(s["changes"], 3);
    assert_eq!(s["grandfathered"], 1);
    assert_eq!(s["assessed"], 2);
    assert_eq!(s["compliant"], 1);
    assert_eq!(s["with_exceptions"], 1);
    assert_eq!(s["share"], "1 of 2");
    assert_eq!(s["percent_compliant"], 50.0);
    assert_eq!(
        s["people"]["authors"],
        serde_json::json!([{"person": "alice", "roles": ["developer"], "changes": 1}])
    );
    assert_eq!(
        s["people"]["approvers"],
        serde_json::json!([
            {"person": "bob", "roles": ["reviewer"], "changes": 1},
            {"person": "sam", "roles": ["security"], "changes": 1}
        ])
    );
    assert_eq!(
        s["people"]["mergers"],
        serde_json::json!([{"person": "mia", "roles": ["maintainer"], "changes": 1}])
    );
    assert_eq!(
        s["exceptions"],
        serde_json::json!([
            {"code": "merge-required", "count": 1, "commits": [h.direct]},
            {"code": "unsigned-commit", "count": 1, "commits": [h.direct]}
        ])
    );
    let changes = j["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 3);
    let (c_direct, c_merge, c_base) = (&changes[0], &changes[1], &changes[2]);
    assert_eq!(c_direct["commit"], h.direct.as_str());
    assert_eq!(c_direct["subject"], EVIL_SUBJECT);
    assert_eq!(c_direct["kind"], "direct");
    assert_eq!(c_direct["status"], "exceptions");
    assert_eq!(c_direct["signed_by"], serde_json::Value::Null);
    let codes: Vec<&str> = c_direct["rules"][0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert_eq!(codes, vec!["unsigned-commit", "merge-required"]);
    assert_eq!(c_merge["commit"], h.merge.as_str());
    assert_eq!(c_merge["kind"], "merge");
    assert_eq!(c_merge["status"], "compliant");
    assert_eq!(c_merge["parents"], serde_json::json!([h.base, h.topic]));
    assert_eq!(c_merge["merger"], "mia");
    assert_eq!(
        c_merge["signed_by"],
        serde_json::json!({"person": "mia", "roles": ["maintainer"]})
    );
    assert_eq!(c_merge["clean_merge"], true);
    assert_eq!(
        c_merge["topic_commits"],
        serde_json::json!([{
            "commit": h.topic, "subject": "Add the feature",
            "signer": "alice", "roles": ["developer"], "codes": []
        }])
    );
    let approvals = c_merge["approvals"].as_array().expect("approvals");
    let who: Vec<(&str, &str, &str, bool)> = approvals
        .iter()
        .map(|a| {
            (
                a["person"].as_str().unwrap_or(""),
                a["counted_as"].as_str().unwrap_or(""),
                a["claimed_by"].as_str().unwrap_or(""),
                a["eligible"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        who,
        vec![
            ("bob", "reviewer", "bob@example.com", true),
            ("sam", "security", "sam@example.com", true)
        ]
    );
    for a in approvals {
        let at = a["issued_at"].as_i64().expect("issued_at");
        assert!(at <= c_merge["committed_at"].as_i64().unwrap_or(0), "{a}");
        assert!(a["issued_at_utc"].as_str().unwrap_or("").ends_with(" UTC"));
    }
    assert_eq!(
        c_merge["rules"],
        serde_json::json!([{"rule": "rule #1 \"main\"", "status": "compliant", "findings": []}])
    );
    assert_eq!(c_base["commit"], h.base.as_str());
    assert_eq!(c_base["status"], "grandfathered");
    assert_eq!(c_base["rules"][0]["status"], "grandfathered");
}

#[test]
fn report_ranges_refs_errors_and_exit_codes() {
    let h = history();
    // --since a revision is exclusive.
    let j = h.json(&["--ref", "main", "--since", &h.merge]);
    assert_eq!(j["summary"]["changes"], 1);
    assert_eq!(j["summary"]["share"], "0 of 1");
    assert_eq!(j["since"]["kind"], "revision");
    assert_eq!(j["since"]["commit"], h.merge.as_str());
    let j = h.json(&["--ref", "refs/heads/main", "--since", &h.base]);
    assert_eq!(j["summary"]["changes"], 2);
    assert_eq!(j["summary"]["share"], "1 of 2");
    // --since a date: committer time at or after it.
    // A commit merged from a topic is in the history too.
    let j = h.json(&["--ref", "main", "--since", "origin/topic"]);
    assert_eq!(j["summary"]["changes"], 2);
    let j = h.json(&["--ref", "main", "--since", "2000-01-01"]);
    assert_eq!(j["summary"]["changes"], 3);
    assert_eq!(j["since"]["kind"], "date");
    let j = h.json(&["--ref", "main", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(j["summary"]["changes"], 0);
    assert_eq!(j["summary"]["share"], "0 of 0");
    assert_eq!(j["summary"]["percent_compliant"], serde_json::Value::Null);

    // --output writes the file; exceptions alone do not fail the report.
    let file = h.sb.root().join("evidence.md");
    let out = h.report(
        &h.mia_dir,
        &[
            "--ref",
            "main",
            "--output",
            file.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("1 of 2 fully compliant"), "{out}");
    let written = std::fs::read_to_string(&file).expect("report file");
    assert!(written.contains("| Fully compliant | 1 of 2 (50.0%) |"));
    let out = h.report(&h.mia_dir, &["--ref", "main", "--fail-on-exceptions"]);
    assert_eq!(out.code, Some(1), "{out}");
    let out = h.report(
        &h.mia_dir,
        &[
            "--ref",
            "main",
            "--since",
            &h.direct,
            "--fail-on-exceptions",
        ],
    );
    assert_eq!(out.code, Some(0), "no change, no exception\n{out}");

    // A clone without a local main reads refs/remotes/origin/main.
    let bob_dir = h.sb.root().join("c-bob");
    h.sb.git_ok_in(&bob_dir, ["fetch", "-q", "origin"]);
    h.sb.git_ok_in(
        &bob_dir,
        ["checkout", "-q", "-b", "elsewhere", "origin/topic"],
    );
    h.sb.git_ok_in(&bob_dir, ["branch", "-q", "-D", "main"]);
    let out = h.report(&bob_dir, &["--ref", "main", "--format", "json"]);
    assert_eq!(out.code, Some(0), "{out}");
    let j: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(j["resolved_from"], "refs/remotes/origin/main");
    assert_eq!(j["ref"], "refs/heads/main");
    assert_eq!(j["tip"], h.merge.as_str());
    assert_eq!(j["summary"]["share"], "1 of 1");

    // Errors are loud, exit 2.
    let out = h.report(&h.mia_dir, &["--ref", "nosuch"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("cannot resolve the ref `nosuch`"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    let out = h.report(&h.mia_dir, &["--ref", "main", "--since", "no-such-rev"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("cannot read `--since no-such-rev`"),
        "{out}"
    );
    // A commit outside main's history (the approval notes' commit).
    let out = h.report(
        &h.mia_dir,
        &["--ref", "main", "--since", "refs/notes/countersign"],
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("is not in the history of"), "{out}");
    let missing = h.sb.root().join("nope.toml");
    let out = h.report(
        &h.mia_dir,
        &[
            "--ref",
            "main",
            "--policy",
            missing.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("no policy file"), "{out}");
    let out = h.report(&h.sb.root().join("p"), &["--ref", "main"]);
    assert_eq!(out.code, Some(2), "outside a repository\n{out}");
}

fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("chromium"))
            .find(|p| p.is_file())
    })
}

#[test]
fn report_html_is_self_contained_and_escaped() {
    let h = history();
    let file = h.sb.root().join("evidence.html");
    let out = h.report(
        &h.mia_dir,
        &[
            "--ref",
            "main",
            "--format",
            "html",
            "--output",
            file.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let page = std::fs::read_to_string(&file).expect("html file");

    // Structure, whatever renders it.
    assert!(page.starts_with("<!DOCTYPE html>\n"), "{page}");
    assert_eq!(page.matches("<html").count(), 1);
    assert_eq!(page.matches("</html>").count(), 1);
    for tag in [
        "head", "body", "main", "table", "section", "ul", "style", "title",
    ] {
        let open =
            page.matches(&format!("<{tag}>")).count() + page.matches(&format!("<{tag} ")).count();
        let close = page.matches(&format!("</{tag}>")).count();
        assert_eq!(open, close, "unbalanced <{tag}>");
        assert!(open > 0, "no <{tag}>");
    }
    let lower = page.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "{page}");
    assert!(!lower.contains(" src="), "{page}");
    assert!(!lower.contains("href="), "{page}");
    assert!(
        !lower.contains("http://") || !lower.contains("=\"http"),
        "{page}"
    );
    assert!(
        !lower.contains("@import") && !lower.contains("url("),
        "{page}"
    );
    assert!(
        page.contains(
            "Hotfix &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; | [x](http://evil.example)"
        ),
        "{page}"
    );
    assert!(page.contains("<td>1 of 2 (50.0%)</td>"), "{page}");
    assert!(page.contains("mia (maintainer), 1 change(s)"), "{page}");

    // Rendered by a real browser, when one is installed.
    let Some(browser) = chromium() else {
        eprintln!("chromium not found: HTML checked structurally only");
        return;
    };
    let profile = h.sb.root().join("chromium-profile");
    let url = format!("file://{}", file.display());
    let mut c = h.sb.cmd(&browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(["--dump-dom", url.as_str()]);
    let dom = c.output().expect("run chromium");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("Compliance evidence: refs/heads/main"),
        "{dom}"
    );
    assert!(dom.contains("1 of 2 (50.0%)"), "{dom}");
    // The subject is text, not a script element.
    assert!(
        dom.contains("Hotfix &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<script"), "{dom}");
}
