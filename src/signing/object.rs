//! Split raw commit and tag objects into the signed payload and signature,
//! exactly as git does, so that what verifies is what git would verify.
//!
//! Commits carry the signature in a `gpgsig` header (continuation lines
//! start with a space); the payload is the object without that header.
//! Tags carry it appended to the message, from the last line that starts a
//! signature armor. Anything ambiguous (two `gpgsig` headers, a SHA-256
//! signature header in a SHA-1 repository) is refused, never guessed.

/// The repository's object format: it decides which commit header holds
/// the signature (`gpgsig` for SHA-1, `gpgsig-sha256` for SHA-256, as git).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// 40-hex object ids; signature header `gpgsig`.
    Sha1,
    /// 64-hex object ids; signature header `gpgsig-sha256`.
    Sha256,
}

/// A signed object split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The bytes the signature must cover.
    pub payload: Vec<u8>,
    /// The armored signature, if any.
    pub signature: Option<Vec<u8>>,
    /// First line of the message, lossily decoded (not yet escaped).
    pub subject: String,
}

/// Why an object could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// Two signature headers: git would concatenate them; we refuse.
    #[error("the commit has more than one `gpgsig` header")]
    DuplicateSignatureHeader,
    /// A signature for another hash algorithm.
    #[error("the commit carries a `gpgsig-sha256` header (a signature over the SHA-256 form of the object), which does not sign this SHA-1 repository's object")]
    Sha256Signature,
    /// A SHA-1 compatibility signature in a SHA-256 repository.
    #[error("the commit carries a `gpgsig` header (a signature over the SHA-1 form of the object), which does not sign this SHA-256 repository's object")]
    Sha1Signature,
    /// No blank line between headers and message, or a header that is not
    /// `name value`.
    #[error("the object's header is malformed")]
    MalformedHeader,
}

/// Armor lines that start a signature inside a tag message (as git's
/// `get_format_by_sig`).
const SIG_STARTS: &[&[u8]] = &[
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN PGP MESSAGE-----",
    b"-----BEGIN SIGNED MESSAGE-----",
    b"-----BEGIN SSH SIGNATURE-----",
];

fn lines(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let start = pos;
        let end = buf[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| pos + i + 1);
        pos = end;
        Some((start, &buf[start..end]))
    })
}

/// The first non-blank line of a message, lossily decoded (not escaped).
pub fn subject_of(message: &[u8]) -> String {
    let first = message
        .split(|&b| b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(b"");
    String::from_utf8_lossy(first).trim_end().to_string()
}

/// Split a raw commit object of a SHA-1 repository.
///
/// # Errors
///
/// [`ObjectError`] for a malformed header, two signature headers, or a `gpgsig-sha256` header.
pub fn split_commit(raw: &[u8]) -> Result<Signed, ObjectError> {
    split_commit_in(raw, HashFormat::Sha1)
}

/// Split a raw commit object of a repository in `format`: the signature is
/// the header git uses for that format; the other format's header is
/// refused (git would strip it from the payload, so it could never count
/// and only makes the object ambiguous).
///
/// # Errors
///
/// [`ObjectError`] for a malformed header, two signature headers, or the other format's signature header.
pub fn split_commit_in(raw: &[u8], format: HashFormat) -> Result<Signed, ObjectError> {
    let (ours, theirs, foreign): (&[u8], &[u8], ObjectError) = match format {
        HashFormat::Sha1 => (b"gpgsig", b"gpgsig-sha256", ObjectError::Sha256Signature),
        HashFormat::Sha256 => (b"gpgsig-sha256", b"gpgsig", ObjectError::Sha1Signature),
    };
    let mut payload = Vec::with_capacity(raw.len());
    let mut signature: Option<Vec<u8>> = None;
    let mut in_sig = false;
    let mut message_at = None;
    for (start, line) in lines(raw) {
        if line == b"\n" {
            message_at = Some(start);
            break;
        }
        if line.first() == Some(&b' ') {
            if in_sig {
                if let Some(sig) = signature.as_mut() {
                    sig.extend_from_slice(&line[1..]);
                }
            } else {
                payload.extend_from_slice(line);
            }
            continue;
        }
        in_sig = false;
        let name_end = line
            .iter()
            .position(|&b| b == b' ' || b == b'\n')
            .unwrap_or(line.len());
        // As git: a header is a signature only when a space follows its name.
        let has_value = line.get(name_end) == Some(&b' ');
        match &line[..name_end] {
            name if name == ours && has_value => {
                if signature.is_some() {
                    return Err(ObjectError::DuplicateSignatureHeader);
                }
                let value = line.get(name_end + 1..).unwrap_or(b"");
                signature = Some(value.to_vec());
                in_sig = true;
            }
            name if name == theirs && has_value => return Err(foreign),
            b"" => return Err(ObjectError::MalformedHeader),
            _ => payload.extend_from_slice(line),
        }
    }
    let Some(message_at) = message_at else {
        return Err(ObjectError::MalformedHeader);
    };
    payload.extend_from_slice(&raw[message_at..]);
    Ok(Signed {
        payload,
        signature,
        subject: subject_of(&raw[message_at + 1..]),
    })
}

/// Split a raw tag object: the signature starts at the last line that
/// begins a signature armor.
///
/// # Errors
///
/// [`ObjectError`] for a tag without a message or with a header signature.
pub fn split_tag(raw: &[u8]) -> Result<Signed, ObjectError> {
    let Some(body_at) = raw.windows(2).position(|w| w == b"\n\n") else {
        return Err(ObjectError::MalformedHeader);
    };
    for (_, line) in lines(&raw[..body_at + 1]) {
        if line.starts_with(b"gpgsig") {
            // SHA-256 / compat tags carry header signatures; not supported.
            return Err(ObjectError::Sha256Signature);
        }
    }
    let mut sig_at = raw.len();
    for (start, line) in lines(raw) {
        if SIG_STARTS.iter().any(|s| line.starts_with(s)) {
            sig_at = start;
        }
    }
    let (payload, signature) = if sig_at < raw.len() && sig_at > body_at {
        (raw[..sig_at].to_vec(), Some(raw[sig_at..].to_vec()))
    } else {
        (raw.to_vec(), None)
    };
    let message_end = if signature.is_some() {
        sig_at
    } else {
        raw.len()
    };
    Ok(Signed {
        payload,
        signature,
        subject: subject_of(&raw[(body_at + 2).min(message_end)..message_end]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &[u8] = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\ngpgsig -----BEGIN SSH SIGNATURE-----\n line1\n -----END SSH SIGNATURE-----\n\nsubject here\n\nbody\n";

    #[test]
    fn commit_signature_is_removed_from_payload() {
        let s = split_commit(SIGNED).unwrap();
        assert_eq!(
            s.payload,
            b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nsubject here\n\nbody\n"
        );
        assert_eq!(
            s.signature.unwrap(),
            b"-----BEGIN SSH SIGNATURE-----\nline1\n-----END SSH SIGNATURE-----\n"
        );
        assert_eq!(s.subject, "subject here");
    }

    #[test]
    fn unsigned_commit_and_message_lookalike() {
        let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nmsg\ngpgsig not a header\n";
        let s = split_commit(raw).unwrap();
        assert_eq!(s.signature, None);
        assert_eq!(s.payload, raw);
    }

    #[test]
    fn header_named_gpgsig_without_value_is_not_a_signature() {
        let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ngpgsig\n\nmsg\n";
        let s = split_commit(raw).unwrap();
        assert_eq!(s.signature, None);
        assert_eq!(s.payload, raw);
    }

    #[test]
    fn ambiguous_commits_refused() {
        let mut two = SIGNED.to_vec();
        let extra = b"gpgsig x\n";
        two.splice(46..46, extra.iter().copied());
        assert_eq!(
            split_commit(&two),
            Err(ObjectError::DuplicateSignatureHeader)
        );
        let sha256 = String::from_utf8_lossy(SIGNED).replace("gpgsig ", "gpgsig-sha256 ");
        assert_eq!(
            split_commit(sha256.as_bytes()),
            Err(ObjectError::Sha256Signature)
        );
        assert_eq!(split_commit(b"tree x"), Err(ObjectError::MalformedHeader));
        // In a SHA-256 repository the roles swap.
        let s = split_commit_in(sha256.as_bytes(), HashFormat::Sha256).unwrap();
        assert_eq!(s.payload, split_commit(SIGNED).unwrap().payload);
        assert!(s.signature.is_some());
        assert_eq!(
            split_commit_in(SIGNED, HashFormat::Sha256),
            Err(ObjectError::Sha1Signature)
        );
        assert_eq!(split_commit(b""), Err(ObjectError::MalformedHeader));
    }

    /// Mutated inputs never panic (a cheap stand-in for a fuzzer: a fixed
    /// xorshift sequence of byte flips, truncations and insertions).
    #[test]
    fn mutations_never_panic() {
        let tag = b"object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ntype commit\ntag v1\n\nm\n-----BEGIN SSH SIGNATURE-----\nx\n";
        for seed in [SIGNED, &tag[..]] {
            for v in crate::mutate::mutants(seed, 5000) {
                let _ = split_commit(&v);
                let _ = split_tag(&v);
            }
        }
    }

    #[test]
    fn tag_signature_is_the_last_armor() {
        let raw = b"object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ntype commit\ntag v1\ntagger A <a@x> 1 +0000\n\nrelease v1\n-----BEGIN PGP SIGNATURE-----\nfake\n-----END PGP SIGNATURE-----\n-----BEGIN SSH SIGNATURE-----\nabc\n-----END SSH SIGNATURE-----\n";
        let s = split_tag(raw).unwrap();
        assert!(s.payload.ends_with(b"-----END PGP SIGNATURE-----\n"));
        assert!(s
            .signature
            .unwrap()
            .starts_with(b"-----BEGIN SSH SIGNATURE-----"));
        assert_eq!(s.subject, "release v1");
        let unsigned =
            b"object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ntype commit\ntag v1\n\nhello\n";
        assert_eq!(split_tag(unsigned).unwrap().signature, None);
    }
}
