//! Approvals: a signed, canonical, versioned, domain-separated statement
//! that one person approves exactly one change for one ref of one
//! repository, carried as a one-line git trailer.
//!
//! The statement (what is signed) is rebuilt from the trailer's fields:
//!
//! ```text
//! countersign approval v1
//! repository acme/payments
//! ref refs/heads/main
//! kind topic
//! commit <topic tip id>
//! tree <topic tip's tree id>
//! issued-at <unix seconds>
//! ```
//!
//! or, for an approval of an exact merge result (`approve --result`),
//! `kind result`, `parents <p1> [<p2>]`, `tree <result tree id>`. SSH
//! approvals use the namespace `countersign-approval`, never `git`; the
//! first line keeps an OpenPGP approval from being read as a commit or tag
//! payload (those begin `tree ` / `object `), and the reverse.
//!
//! Only the signature's key decides who approved; `by=` is for humans.

use base64ct::{Base64, Encoding};
use git2::Oid;

use crate::time::Timestamp;

/// SSH signature namespace for approvals.
pub const NAMESPACE: &str = "countersign-approval";
/// Trailer key (matched case-insensitively, as git does).
pub const TRAILER: &str = "Countersign-Approval";
/// Trailer naming the topic a single-parent landing commit squashes.
pub const SQUASH_TRAILER: &str = "Countersign-Squash";
/// Trailer binding a signed tag to one repository (its `repository.id`).
pub const REPOSITORY_TRAILER: &str = "Countersign-Repository";
/// First line of every v1 statement.
pub const HEADER: &str = "countersign approval v1";

/// What an approval binds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// A topic tip, to be merged cleanly.
    Topic {
        /// Topic tip commit.
        commit: Oid,
        /// Its tree.
        tree: Oid,
    },
    /// An exact result: these parents, this tree (conflict resolutions,
    /// squash merges).
    Result {
        /// Parents of the resulting commit, in order.
        parents: Vec<Oid>,
        /// Tree of the resulting commit.
        tree: Oid,
    },
}

/// The signed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `repository.id` of the policy.
    pub repository: String,
    /// Target ref, full name.
    pub refname: String,
    /// What was approved.
    pub binding: Binding,
    /// When the approver signed (their clock; informational).
    pub issued_at: Timestamp,
}

impl Statement {
    /// The exact bytes that are signed.
    pub fn canonical(&self) -> Vec<u8> {
        let mut s = format!(
            "{HEADER}\nrepository {}\nref {}\n",
            self.repository, self.refname
        );
        match &self.binding {
            Binding::Topic { commit, tree } => {
                s.push_str(&format!("kind topic\ncommit {commit}\ntree {tree}\n"));
            }
            Binding::Result { parents, tree } => {
                let p: Vec<String> = parents.iter().map(Oid::to_string).collect();
                s.push_str(&format!(
                    "kind result\nparents {}\ntree {tree}\n",
                    p.join(" ")
                ));
            }
        }
        s.push_str(&format!("issued-at {}\n", self.issued_at));
        s.into_bytes()
    }
}

/// Why an approval trailer cannot be parsed. Quoted fields come from the
/// pusher: callers cut and escape them before showing them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field without `=`.
    #[error("field `{0}` is not key=value")]
    NotKeyValue(String),
    /// A field this version does not know.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A field given twice.
    #[error("field `{0}` appears twice")]
    Twice(String),
    /// A required field is missing.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// An object id that is not 40 or 64 hex digits.
    #[error("`{0}` must be a full object id (40 or 64 hex digits)")]
    BadId(&'static str),
    /// A field that belongs to the other kind.
    #[error("`{0}` belongs to kind={1}")]
    WrongKind(&'static str, &'static str),
    /// `parents` of a result approval must list one or two commits.
    #[error("`parents` must list one or two commits")]
    Parents,
    /// An unknown `kind`.
    #[error("unknown kind `{0}`")]
    UnknownKind(String),
    /// `at` is not Unix seconds.
    #[error("`at` must be Unix seconds")]
    BadTime,
    /// `sig` is not base64.
    #[error("`sig` is not valid base64")]
    BadSignature,
}

/// A parsed approval trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Who the trailer claims approved (not trusted).
    pub by: String,
    /// The statement it claims to sign.
    pub statement: Statement,
    /// The binary signature (SSHSIG blob or OpenPGP packets).
    pub signature: Vec<u8>,
}

impl Approval {
    /// The trailer line: `Countersign-Approval: by=... repo=... sig=...`.
    pub fn trailer(&self) -> String {
        let st = &self.statement;
        let mut fields = vec![
            format!("by={}", self.by),
            format!("repo={}", st.repository),
            format!("ref={}", st.refname),
        ];
        match &st.binding {
            Binding::Topic { commit, tree } => {
                fields.push("kind=topic".into());
                fields.push(format!("commit={commit}"));
                fields.push(format!("tree={tree}"));
            }
            Binding::Result { parents, tree } => {
                let p: Vec<String> = parents.iter().map(Oid::to_string).collect();
                fields.push("kind=result".into());
                fields.push(format!("parents={}", p.join(",")));
                fields.push(format!("tree={tree}"));
            }
        }
        fields.push(format!("at={}", st.issued_at));
        fields.push(format!("sig={}", Base64::encode_string(&self.signature)));
        format!("{TRAILER}: {}", fields.join(" "))
    }

    /// Parse a trailer's value (the part after `Countersign-Approval:`).
    ///
    /// # Errors
    ///
    /// [`ParseError`] for anything but a well-formed v1 trailer.
    pub fn parse(value: &str) -> Result<Approval, ParseError> {
        let mut by = None;
        let mut repo = None;
        let mut refname = None;
        let mut kind = None;
        let mut commit = None;
        let mut parents = None;
        let mut tree = None;
        let mut at = None;
        let mut sig = None;
        for field in value.split_ascii_whitespace() {
            let Some((k, v)) = field.split_once('=') else {
                return Err(ParseError::NotKeyValue(field.to_string()));
            };
            let slot = match k {
                "by" => &mut by,
                "repo" => &mut repo,
                "ref" => &mut refname,
                "kind" => &mut kind,
                "commit" => &mut commit,
                "parents" => &mut parents,
                "tree" => &mut tree,
                "at" => &mut at,
                "sig" => &mut sig,
                other => return Err(ParseError::UnknownField(other.to_string())),
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(ParseError::Twice(k.to_string()));
            }
        }
        let need = |f: Option<String>, name: &'static str| f.ok_or(ParseError::Missing(name));
        let oid = |s: &str, name: &'static str| -> Result<Oid, ParseError> {
            let format = match s.len() {
                40 => git2::ObjectFormat::Sha1,
                64 => git2::ObjectFormat::Sha256,
                _ => return Err(ParseError::BadId(name)),
            };
            if s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Oid::from_str_ext(s, format).map_err(|_| ParseError::BadId(name))
            } else {
                Err(ParseError::BadId(name))
            }
        };
        let tree = oid(&need(tree, "tree")?, "tree")?;
        let binding = match need(kind, "kind")?.as_str() {
            "topic" => {
                if parents.is_some() {
                    return Err(ParseError::WrongKind("parents", "result"));
                }
                Binding::Topic {
                    commit: oid(&need(commit, "commit")?, "commit")?,
                    tree,
                }
            }
            "result" => {
                if commit.is_some() {
                    return Err(ParseError::WrongKind("commit", "topic"));
                }
                let p = need(parents, "parents")?;
                let parents = p
                    .split(',')
                    .map(|x| oid(x, "parents"))
                    .collect::<Result<Vec<_>, _>>()?;
                if parents.is_empty() || parents.len() > 2 {
                    return Err(ParseError::Parents);
                }
                Binding::Result { parents, tree }
            }
            other => return Err(ParseError::UnknownKind(other.to_string())),
        };
        let issued_at: Timestamp = need(at, "at")?.parse().map_err(|_| ParseError::BadTime)?;
        let signature =
            Base64::decode_vec(&need(sig, "sig")?).map_err(|_| ParseError::BadSignature)?;
        Ok(Approval {
            by: need(by, "by")?,
            statement: Statement {
                repository: need(repo, "repo")?,
                refname: need(refname, "ref")?,
                binding,
                issued_at,
            },
            signature,
        })
    }
}

/// The values of every `Countersign-Approval` trailer in a commit message,
/// read as `git interpret-trailers --parse` reads trailers: from the last
/// paragraph only, keys case-insensitive, `:` separator, whitespace
/// trimmed. Approvals anywhere else do not count (they can only be missing,
/// never forged: each one is verified on its own).
pub fn trailers(message: &[u8]) -> Vec<String> {
    trailer_values(message, TRAILER)
}

/// The values of every `key:` trailer in the last paragraph of `message`,
/// read as [`trailers`] reads approvals.
pub fn trailer_values(message: &[u8], key: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    while end > 0 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && !lines[start - 1].trim().is_empty() {
        start -= 1;
    }
    if start == 0 {
        // The only paragraph is the subject: git never reads it as trailers.
        return Vec::new();
    }
    lines[start..end]
        .iter()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim_end().eq_ignore_ascii_case(key) && !k.starts_with(char::is_whitespace))
                .then(|| v.trim().to_string())
        })
        .collect()
}

/// Turn an armored SSH or OpenPGP signature (what `ssh-keygen -Y sign` or
/// `gpg -bsa` print) into the binary form carried in trailers.
///
/// # Errors
///
/// A message when the text is not one SSH or OpenPGP signature armor.
pub fn dearmor(armored: &[u8]) -> Result<Vec<u8>, String> {
    let text =
        std::str::from_utf8(armored).map_err(|_| "signature is not ASCII armor".to_string())?;
    let text = text.trim();
    let (begin, end) = if text.starts_with("-----BEGIN SSH SIGNATURE-----") {
        (
            "-----BEGIN SSH SIGNATURE-----",
            "-----END SSH SIGNATURE-----",
        )
    } else if text.starts_with("-----BEGIN PGP SIGNATURE-----") {
        (
            "-----BEGIN PGP SIGNATURE-----",
            "-----END PGP SIGNATURE-----",
        )
    } else {
        return Err("not an SSH or OpenPGP signature".into());
    };
    let body = text
        .strip_prefix(begin)
        .and_then(|t| t.strip_suffix(end))
        .ok_or_else(|| "signature armor is not closed".to_string())?;
    let mut b64 = String::new();
    let mut lines = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .peekable();
    // OpenPGP armor may carry `Key: value` headers, then a checksum line.
    while let Some(l) = lines.peek() {
        if l.contains(": ") {
            lines.next();
        } else {
            break;
        }
    }
    for l in lines {
        if l.starts_with('=') && l.len() == 5 {
            continue; // OpenPGP CRC-24
        }
        b64.push_str(l);
    }
    Base64::decode_vec(&b64).map_err(|_| "signature armor holds invalid base64".to_string())
}

/// Rebuild the armored form of a binary signature, as the verifiers read it.
pub fn armor(binary: &[u8]) -> Vec<u8> {
    let (begin, end) = if binary.starts_with(b"SSHSIG") {
        (
            "-----BEGIN SSH SIGNATURE-----",
            "-----END SSH SIGNATURE-----",
        )
    } else {
        (
            "-----BEGIN PGP SIGNATURE-----",
            "-----END PGP SIGNATURE-----",
        )
    };
    let b64 = Base64::encode_string(binary);
    let mut out = format!("{begin}\n");
    if begin.contains("PGP") {
        out.push('\n');
    }
    for chunk in b64.as_bytes().chunks(70) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(end);
    out.push('\n');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(c: char) -> Oid {
        Oid::from_str(&c.to_string().repeat(40)).unwrap()
    }

    fn sample(binding: Binding) -> Approval {
        Approval {
            by: "bob@example.com".into(),
            statement: Statement {
                repository: "acme/payments".into(),
                refname: "refs/heads/main".into(),
                binding,
                issued_at: 1_764_400_000,
            },
            signature: b"SSHSIG\x00\x01binary".to_vec(),
        }
    }

    #[test]
    fn canonical_statement_matches_vector() {
        let vector = include_str!("../../tests/vectors/approval-v1.txt");
        let (topic, result) = vector.split_once("\n%%\n").unwrap();
        let topic: String = topic
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let a = sample(Binding::Topic {
            commit: oid('a'),
            tree: oid('b'),
        });
        assert_eq!(String::from_utf8(a.statement.canonical()).unwrap(), topic);
        let r = sample(Binding::Result {
            parents: vec![oid('c'), oid('d')],
            tree: oid('e'),
        });
        assert_eq!(String::from_utf8(r.statement.canonical()).unwrap(), result);
    }

    #[test]
    fn trailer_round_trip() {
        for b in [
            Binding::Topic {
                commit: oid('a'),
                tree: oid('b'),
            },
            Binding::Result {
                parents: vec![oid('c'), oid('d')],
                tree: oid('e'),
            },
            Binding::Result {
                parents: vec![oid('c')],
                tree: oid('e'),
            },
        ] {
            let a = sample(b);
            let line = a.trailer();
            assert!(!line.contains('\n'));
            let value = line.strip_prefix("Countersign-Approval: ").unwrap();
            assert_eq!(Approval::parse(value).unwrap(), a);
        }
    }

    #[test]
    fn malformed_trailers_refused() {
        let good = sample(Binding::Topic {
            commit: oid('a'),
            tree: oid('b'),
        })
        .trailer();
        let value = good
            .strip_prefix("Countersign-Approval: ")
            .unwrap()
            .to_string();
        for bad in [
            value.replace("kind=topic", "kind=other"),
            value.replace("at=1764400000", "at=soon"),
            format!("{value} by=mallory"),
            value.replace("sig=", "sig=!!"),
            value.replace(&format!("commit={}", oid('a')), "commit=abc"),
            value.replace("kind=topic", "kind=topic parents=".to_string().as_str())
                + &oid('c').to_string(),
            value.replace("repo=acme/payments ", ""),
            format!("{value} extra"),
        ] {
            assert!(Approval::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trailers_only_from_last_paragraph() {
        let msg = b"Merge topic\n\nCountersign-Approval: early\n\nbody text\n\nSigned-off-by: x\ncountersign-approval : one\nCountersign-Approval:two  \n  continued\n\n\n";
        assert_eq!(trailers(msg), vec!["one".to_string(), "two".to_string()]);
        assert!(trailers(b"Countersign-Approval: subject only\n").is_empty());
    }

    /// Mutated trailers and messages never panic the parsers.
    #[test]
    fn mutations_never_panic() {
        let line = sample(Binding::Topic {
            commit: oid('a'),
            tree: oid('b'),
        })
        .trailer();
        for v in crate::mutate::mutants(line.as_bytes(), 3000) {
            let text = String::from_utf8_lossy(&v);
            let _ = Approval::parse(text.strip_prefix("Countersign-Approval: ").unwrap_or(&text));
            let _ = trailers(&v);
            let _ = dearmor(&v);
        }
        let message = format!("Merge\n\n{line}\n");
        for v in crate::mutate::mutants(message.as_bytes(), 3000) {
            let _ = trailers(&v);
        }
    }

    #[test]
    fn armor_round_trip() {
        let bin = b"SSHSIG\x00\x00\x00\x01some bytes here".repeat(10);
        assert_eq!(dearmor(&armor(&bin)).unwrap(), bin);
        let pgp = b"\x88\x75\x04\x00".repeat(30);
        assert_eq!(dearmor(&armor(&pgp)).unwrap(), pgp);
        let with_headers = b"-----BEGIN PGP SIGNATURE-----\nComment: hi\n\niHUEAA==\n=abcd\n-----END PGP SIGNATURE-----\n";
        assert_eq!(dearmor(with_headers).unwrap(), b"\x88\x75\x04\x00");
        assert!(dearmor(b"-----BEGIN SIGNED MESSAGE-----").is_err());
    }
}
