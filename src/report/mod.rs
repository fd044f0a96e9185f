//! Render a decision for people (text) and for programs (JSON).
//!
//! Every string that came from the pusher (subjects, ref names, messages
//! quoting them) is escaped here, in one place, before it reaches a
//! terminal. The `countersign:` prefix is added here and nowhere else.

pub mod evidence;

use serde::Serialize;

use crate::engine::Decision;
use crate::finding::Finding;
use crate::sanitize::escape;

/// Program prefix for every line a person reads.
pub const PREFIX: &str = "countersign";

/// What the decision was about, for the headline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A push seen by the hook: a rejection means nothing was updated.
    Push,
    /// Offline verification of existing history.
    Verify,
}

/// Render for a terminal. At most `limit` findings are shown in full; the
/// rest are counted.
pub fn text(decision: &Decision, mode: Mode, limit: usize) -> String {
    let mut out = String::new();
    let protected = decision
        .updates
        .iter()
        .filter(|u| !u.rules.is_empty())
        .count();
    let unprotected = decision.updates.len() - protected;
    if decision.accepted() {
        let checked: usize = decision.updates.iter().map(|u| u.commits_checked).sum();
        out.push_str(&format!(
            "{PREFIX}: accepted: {} ref update(s), {protected} protected, {unprotected} unprotected; {checked} commit(s) verified\n",
            decision.updates.len()
        ));
        for u in decision.updates.iter().filter(|u| u.rules.is_empty()) {
            out.push_str(&format!(
                "{PREFIX}: note: {} is unprotected (no rule matches it): accepted without checks\n",
                escape(&u.refname)
            ));
        }
        return out;
    }
    let refs_with_problems = {
        let mut r: Vec<&str> = decision
            .findings
            .iter()
            .filter_map(|f| f.refname.as_deref())
            .collect();
        r.sort_unstable();
        r.dedup();
        r.len()
    };
    let n = decision.findings.len() + decision.omitted;
    let affected = refs_with_problems.max(usize::from(decision.updates.is_empty()));
    let total = decision.updates.len();
    out.push_str(&match mode {
        Mode::Push => format!(
            "{PREFIX}: push rejected: {n} problem(s) in {affected} of {total} ref update(s); nothing was updated\n"
        ),
        Mode::Verify => format!("{PREFIX}: verification failed: {n} problem(s)\n"),
    });
    for f in decision.findings.iter().take(limit) {
        out.push('\n');
        // The pusher never sees server-side detail (paths, OS errors).
        out.push_str(&block(f, mode == Mode::Verify));
    }
    let shown = decision.findings.len().min(limit);
    if n > shown {
        out.push_str(&match mode {
            Mode::Push => format!(
                "\n{PREFIX}: ... and {} more problem(s); run `countersign verify` on the range to see them all\n",
                n - shown
            ),
            Mode::Verify => format!(
                "\n{PREFIX}: ... and {} more problem(s) not shown (`--max-findings 0` shows all; `--format json` lists all)\n",
                n - shown
            ),
        });
    }
    if let Some(why) = &decision.stopped {
        out.push_str(&format!(
            "{PREFIX}: note: not every object was examined: {}\n",
            escape(why)
        ));
    }
    out
}

/// Verification text with at most `per_code` findings of each code shown
/// (0: all), then the count of every code: 20,000 commits with the same
/// problem make a readable answer, not 120,000 lines.
pub fn verify_text(decision: &Decision, per_code: usize) -> String {
    if decision.accepted() || per_code == 0 {
        return text(decision, Mode::Verify, usize::MAX);
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut kept = decision.clone();
    kept.findings.clear();
    for f in &decision.findings {
        let c = counts.entry(f.code.as_str()).or_default();
        *c += 1;
        if *c <= per_code {
            kept.findings.push(f.clone());
        }
    }
    kept.omitted = decision.omitted + (decision.findings.len() - kept.findings.len());
    let mut out = text(&kept, Mode::Verify, usize::MAX);
    if kept.findings.len() < decision.findings.len() {
        out.push_str(&format!(
            "{PREFIX}: problems by code (at most {per_code} of each shown):\n"
        ));
        for (code, n) in &counts {
            out.push_str(&format!("  {code}: {n}\n"));
        }
    }
    out
}

/// Cut rendered text to at most `max` bytes (on a character boundary),
/// saying so on a last line of its own.
pub fn cap(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!(
        "\n{PREFIX}: ... output cut at {max} bytes (limit `stderr-bytes`); the audit log holds the decision\n"
    );
    let mut end = max.saturating_sub(note.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].to_string();
    out.push_str(&note);
    out
}

/// One finding as a readable block, server-side detail included (for
/// the admin's own commands).
pub fn finding_block(f: &Finding) -> String {
    block(f, true)
}

fn block(f: &Finding, with_detail: bool) -> String {
    let mut out = String::new();
    let mut lines = f.message.lines();
    out.push_str(&format!(
        "error[{}]: {}\n",
        f.code,
        escape(lines.next().unwrap_or(""))
    ));
    for l in lines {
        out.push_str(&format!("    {}\n", escape(l)));
    }
    if let Some(r) = &f.refname {
        out.push_str(&format!("  ref:    {}\n", escape(r)));
    }
    if let Some(c) = &f.commit {
        let short = &c[..c.len().min(12)];
        match f.subject.as_deref() {
            Some(s) if !s.is_empty() => {
                out.push_str(&format!("  object: {short} \"{}\"\n", escape(s)))
            }
            _ => out.push_str(&format!("  object: {short}\n")),
        }
    }
    if let Some(r) = &f.rule {
        out.push_str(&format!("  rule:   {}\n", escape(r)));
    }
    out.push_str(&format!("  help:   {}\n", escape(&f.help)));
    if let (true, Some(d)) = (with_detail, &f.detail) {
        out.push_str(&format!("  detail: {}\n", escape(d)));
    }
    out
}

#[derive(Serialize)]
struct JsonDecision<'a> {
    verdict: &'static str,
    #[serde(flatten)]
    decision: &'a Decision,
}

/// Render as one JSON document: `{"verdict": ..., "updates": [...], "findings": [...]}`.
pub fn json(decision: &Decision) -> String {
    let doc = JsonDecision {
        verdict: if decision.accepted() {
            "accepted"
        } else {
            "rejected"
        },
        decision,
    };
    serde_json::to_string_pretty(&doc)
        .unwrap_or_else(|e| format!("{{\"verdict\":\"rejected\",\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Code;

    #[test]
    fn block_escapes_attacker_text() {
        let f = Finding::new(Code::UnsignedCommit, "the commit is not signed", "sign it")
            .at_ref("refs/heads/ma\u{1b}[2Jin")
            .at_object(
                "0123456789abcdef0123456789abcdef01234567",
                Some("evil\u{202e}txt".into()),
            )
            .under_rule("rule #1");
        let b = finding_block(&f);
        assert!(b.starts_with("error[unsigned-commit]: the commit is not signed\n"));
        assert!(b.contains("ref:    refs/heads/ma\\u{1b}[2Jin"));
        assert!(b.contains("object: 0123456789ab \"evil\\u{202e}txt\""));
        assert!(!b.contains('\u{1b}'));
    }

    #[test]
    fn rejection_counts_and_limit() {
        let f = Finding::new(Code::ForcePush, "m", "h").at_ref("refs/heads/main");
        let d = Decision {
            updates: Vec::new(),
            findings: vec![f.clone(), f.clone(), f],
            omitted: 2,
            stopped: Some("checking stopped after 3 findings".into()),
        };
        let t = text(&d, Mode::Push, 2);
        assert!(t.starts_with("countersign: push rejected: 5 problem(s)"));
        assert_eq!(t.matches("error[force-push]").count(), 2);
        assert!(t.contains("and 3 more problem(s)"));
        assert!(t.contains("note: not every object was examined: checking stopped after 3"));
        let capped = cap(t.clone(), 120);
        assert!(capped.len() <= 120, "{capped}");
        assert!(capped.ends_with("(limit `stderr-bytes`); the audit log holds the decision\n"));
        assert_eq!(cap(t.clone(), t.len()), t);
        assert!(json(&d).contains("\"verdict\": \"rejected\""));
    }
}
