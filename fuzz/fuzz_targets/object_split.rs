//! `object::split_commit` and `object::split_tag` on arbitrary bytes.
//!
//! Never panics, and when a split succeeds these hold (read from
//! src/object.rs):
//!
//! Commits
//! - unsigned (`signature == None`): `payload == raw` — every header line,
//!   continuation line and the message are kept byte for byte;
//! - signed: the signature is the `gpgsig` header's value plus each of its
//!   continuation lines without their leading space, so it is non-empty,
//!   ends with `\n` and is a sequence of `\n`-terminated lines; `payload`
//!   is `raw` without exactly those header lines;
//! - re-inserting the signature as git writes it (`gpgsig <line 1>` then
//!   ` <line n>` for each further line) just before the blank line that
//!   ends the payload's header yields an object that splits to the same
//!   payload, signature and subject;
//! - the payload of a signed commit splits again as an unsigned commit
//!   with itself as payload (splitting is idempotent);
//! - nothing before the header/message boundary is a `gpgsig-sha256`
//!   header (those are refused).
//!
//! Tags
//! - `payload ++ signature == raw` (or `payload == raw` when unsigned);
//! - the signature starts with one of the four armor lines git recognises,
//!   and no later line of it starts one (it is the *last* armor), and it
//!   lies after the header/message boundary;
//! - the signature's armor line starts a line of `raw`.
//!
//! Both: the subject has no `\n` and no trailing whitespace.
#![no_main]

use countersign::signing::object::{split_commit, split_tag, Signed};
use libfuzzer_sys::fuzz_target;

const SIG_STARTS: &[&[u8]] = &[
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN PGP MESSAGE-----",
    b"-----BEGIN SIGNED MESSAGE-----",
    b"-----BEGIN SSH SIGNATURE-----",
];

/// `\n`-terminated lines of `buf` (the last one may lack its `\n`).
fn lines(buf: &[u8]) -> Vec<&[u8]> {
    buf.split_inclusive(|&b| b == b'\n').collect()
}

/// Offset of the header/message boundary of a commit: the start of the
/// first line that is exactly `\n`.
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    for l in lines(buf) {
        if l == b"\n" {
            return Some(at);
        }
        at += l.len();
    }
    None
}

/// Re-insert `sig` as a `gpgsig` header, as git writes it, at the end of
/// the header of `payload`.
fn with_gpgsig(payload: &[u8], sig: &[u8]) -> Vec<u8> {
    let at = header_end(payload).expect("payload of a split commit has a blank line");
    let mut out = payload[..at].to_vec();
    for (i, l) in lines(sig).into_iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"gpgsig " } else { b" " });
        out.extend_from_slice(l);
    }
    out.extend_from_slice(&payload[at..]);
    out
}

fn check_subject(s: &Signed) {
    assert!(!s.subject.contains('\n'), "subject with a newline: {:?}", s.subject);
    assert_eq!(s.subject.trim_end(), s.subject, "subject not trimmed");
}

fn commit(raw: &[u8]) {
    let Ok(s) = split_commit(raw) else { return };
    check_subject(&s);
    let boundary = header_end(raw).expect("a split commit has a blank line");
    for l in lines(&raw[..boundary]) {
        assert!(
            !l.starts_with(b"gpgsig-sha256 "),
            "accepted a commit with a gpgsig-sha256 header"
        );
    }
    // The message is carried over unchanged, and is the payload's tail.
    assert!(s.payload.ends_with(&raw[boundary..]));
    match &s.signature {
        None => assert_eq!(s.payload, raw, "unsigned commit: payload must be the object"),
        Some(sig) => {
            assert!(!sig.is_empty() && sig.ends_with(b"\n"), "signature {sig:?}");
            // payload + signature header lines account for every byte.
            let removed: usize = lines(sig).len() + "gpgsig ".len() - 1 + sig.len();
            assert_eq!(
                s.payload.len() + removed,
                raw.len(),
                "payload is not the object less the gpgsig header"
            );
            let rebuilt = with_gpgsig(&s.payload, sig);
            let again = split_commit(&rebuilt).unwrap_or_else(|e| {
                panic!(
                    "re-inserted signature does not split: {e}\n{}",
                    String::from_utf8_lossy(&rebuilt)
                )
            });
            assert_eq!(again, s, "re-inserted signature splits differently");
            let unsigned = split_commit(&s.payload).expect("the payload splits");
            assert_eq!(unsigned.signature, None, "payload still holds a signature");
            assert_eq!(unsigned.payload, s.payload);
            assert_eq!(unsigned.subject, s.subject);
        }
    }
}

fn tag(raw: &[u8]) {
    let Ok(s) = split_tag(raw) else { return };
    check_subject(&s);
    match &s.signature {
        None => assert_eq!(s.payload, raw, "unsigned tag: payload must be the object"),
        Some(sig) => {
            let mut joined = s.payload.clone();
            joined.extend_from_slice(sig);
            assert_eq!(joined, raw, "tag payload + signature must be the object");
            assert!(
                s.payload.is_empty() || s.payload.ends_with(b"\n"),
                "signature does not start a line"
            );
            assert!(SIG_STARTS.iter().any(|p| sig.starts_with(p)));
            for l in lines(sig).into_iter().skip(1) {
                assert!(
                    !SIG_STARTS.iter().any(|p| l.starts_with(p)),
                    "signature is not the last armor"
                );
            }
            let body = raw.windows(2).position(|w| w == b"\n\n").unwrap();
            assert!(s.payload.len() > body, "signature inside the tag header");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    commit(data);
    tag(data);
});
