//! Verify one detached signature over one payload against the keyring.
//!
//! Two formats: SSH signatures (`-----BEGIN SSH SIGNATURE-----`, checked
//! with `ssh-key`, and only in the namespace the caller asks for) and
//! OpenPGP (checked with sequoia under its StandardPolicy: the certificate
//! and signing (sub)key must be valid and unrevoked at signature time, and
//! at the time of the check; a revocation by a third party such as a
//! designated revoker counts, since sequoia cannot verify it). The answer is
//! the policy key that made the signature, or a precise reason it does not
//! count. Person dates and roles are the caller's business.
//!
//! Before any parsing, a signature longer than [`MAX_SIGNATURE_BYTES`] is
//! refused, and an OpenPGP signature is dearmored and its packet framing
//! walked here, in time linear in its size: it must be exactly one
//! Signature packet, so sequoia never sees Marker packets, trailing
//! packets or garbage.

use base64ct::{Base64, Encoding as _};
use openpgp::cert::prelude::*;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::{RevocationKey, RevocationStatus, SignatureType};
use sequoia_openpgp as openpgp;

use crate::policy::keys::{ssh_fingerprint, Keyring, Material};
use crate::time::{self, Timestamp};

/// The signature format, from its armor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SSH signature (SshSig).
    Ssh,
    /// OpenPGP detached signature.
    OpenPgp,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Index into the keyring.
    pub key: usize,
    /// Format used.
    pub format: Format,
    /// Signature creation time, where the format records one (OpenPGP).
    pub created: Option<Timestamp>,
    /// The OpenPGP (sub)key that made the signature (hex fingerprint).
    pub signing_key: Option<String>,
    /// When the signature itself expires, where it says (OpenPGP).
    pub expires: Option<Timestamp>,
}

/// Why a signature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// Could not be parsed, or has a shape we do not accept.
    #[error("{0}")]
    Malformed(String),
    /// SSH signature for another namespace.
    #[error("the SSH signature is for namespace `{found}`, not `{expected}`")]
    Namespace {
        /// Namespace in the signature.
        found: String,
        /// Namespace required.
        expected: String,
    },
    /// Made by a key no one in the policy holds.
    #[error("signed by {0}, which no person in the policy holds")]
    UnknownSigner(String),
    /// The key is known but the signature does not verify.
    #[error("the signature by {key} does not verify over this object: {reason}")]
    Bad {
        /// Key description.
        key: String,
        /// Why.
        reason: String,
    },
    /// The OpenPGP certificate or key is expired (now or when it signed).
    #[error("{0}")]
    Expired(String),
    /// The OpenPGP certificate or key is revoked.
    #[error("{0}")]
    Revoked(String),
}

/// The largest armored signature accepted, in bytes, whatever the format.
///
/// Real signatures are far smaller (an RSA-4096 OpenPGP signature is under
/// 1 KiB armored); this hard cap bounds the work an attacker can make the
/// hook do per signature. The engine may apply a lower, configurable limit.
pub const MAX_SIGNATURE_BYTES: usize = 64 * 1024;

fn too_big(len: usize, what: &str) -> SigError {
    SigError::Malformed(format!(
        "the {what} is {len} bytes, more than the limit of {MAX_SIGNATURE_BYTES} bytes (MAX_SIGNATURE_BYTES)"
    ))
}

/// Which format an armored signature claims to be.
pub fn format_of(sig: &[u8]) -> Option<Format> {
    let trimmed = sig.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
        Some(Format::Ssh)
    } else if trimmed.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
        Some(Format::OpenPgp)
    } else {
        None
    }
}

/// Verify an approval: `binary` is the signature as carried in a trailer,
/// `statement` the canonical bytes it must cover. SSH approvals must use
/// the approval namespace.
///
/// # Errors
///
/// [`SigError`]: malformed, wrong namespace, unknown signer, bad, expired or revoked.
pub fn verify_approval(
    keyring: &Keyring,
    binary: &[u8],
    statement: &[u8],
    now: Timestamp,
) -> Result<Verified, SigError> {
    // Armor only grows it: refuse before spending anything on it.
    if binary.len() > MAX_SIGNATURE_BYTES {
        return Err(too_big(binary.len(), "approval signature"));
    }
    let armored = crate::signing::approval::armor(binary);
    verify(
        keyring,
        &armored,
        statement,
        crate::signing::approval::NAMESPACE,
        now,
    )
}

/// Verify `sig` over `payload`. SSH signatures must carry `namespace`.
/// `now` is the time of the check (push time).
///
/// # Errors
///
/// [`SigError`]: malformed, wrong namespace, unknown signer, bad, expired or revoked.
pub fn verify(
    keyring: &Keyring,
    sig: &[u8],
    payload: &[u8],
    namespace: &str,
    now: Timestamp,
) -> Result<Verified, SigError> {
    if sig.len() > MAX_SIGNATURE_BYTES {
        return Err(too_big(sig.len(), "armored signature"));
    }
    match format_of(sig) {
        Some(Format::Ssh) => verify_ssh(keyring, sig, payload, namespace),
        Some(Format::OpenPgp) => verify_openpgp(keyring, sig, payload, now),
        None => Err(SigError::Malformed(
            "unsupported signature format (only SSH and OpenPGP signatures are accepted; X.509/gpgsm is not)".into(),
        )),
    }
}

/// Bytes after an `sk-` signature proper: flags (1) and counter (4).
const SK_TRAILER: usize = 5;
/// The user-presence flag of a FIDO signature.
const SK_USER_PRESENT: u8 = 0x01;

fn verify_ssh(
    keyring: &Keyring,
    sig: &[u8],
    payload: &[u8],
    namespace: &str,
) -> Result<Verified, SigError> {
    match ed25519_canonical(keyring, sig, payload, namespace) {
        Some(verified) => Ok(verified),
        None => verify_ssh_parsed(keyring, sig, payload, namespace),
    }
}

/// [`verify_ssh`] through ssh-key's parser: every key type, and the
/// reason of every failure.
fn verify_ssh_parsed(
    keyring: &Keyring,
    sig: &[u8],
    payload: &[u8],
    namespace: &str,
) -> Result<Verified, SigError> {
    let text = std::str::from_utf8(sig)
        .map_err(|_| SigError::Malformed("the SSH signature is not ASCII armor".into()))?;
    let sshsig = ssh_key::SshSig::from_pem(text.trim())
        .map_err(|e| SigError::Malformed(format!("cannot parse the SSH signature: {e}")))?;
    if sshsig.namespace() != namespace {
        return Err(SigError::Namespace {
            found: sshsig.namespace().to_string(),
            expected: namespace.to_string(),
        });
    }
    let Some((idx, key)) = keyring.find_ssh(sshsig.public_key()) else {
        return Err(SigError::UnknownSigner(format!(
            "ssh key {}",
            ssh_fingerprint(sshsig.public_key())
        )));
    };
    let Material::Ssh(public) = &key.material else {
        return Err(SigError::Malformed("internal: key index mismatch".into()));
    };
    if ed25519_fast(keyring, idx, public, &sshsig, namespace, payload) {
        return Ok(Verified {
            key: idx,
            format: Format::Ssh,
            created: None,
            signing_key: None,
            expires: None,
        });
    }
    public
        .verify(namespace, payload, &sshsig)
        .map_err(|e| SigError::Bad {
            key: key.describe(),
            reason: e.to_string(),
        })?;
    // Security keys: as OpenSSH's verifier does, require the user-presence
    // flag, so malware cannot sign silently with a plugged-in token.
    if matches!(
        sshsig.algorithm(),
        ssh_key::Algorithm::SkEd25519 | ssh_key::Algorithm::SkEcdsaSha2NistP256
    ) {
        let data = sshsig.signature_bytes();
        let flags = data
            .len()
            .checked_sub(SK_TRAILER)
            .and_then(|i| data.get(i))
            .copied()
            .unwrap_or(0);
        if flags & SK_USER_PRESENT == 0 {
            return Err(SigError::Bad {
                key: key.describe(),
                reason: "the security key did not confirm user presence (no touch)".into(),
            });
        }
    }
    Ok(Verified {
        key: idx,
        format: Format::Ssh,
        created: None,
        signing_key: None,
        expires: None,
    })
}

/// A good signature, when `sig` is an SSH signature exactly as
/// `ssh-keygen -Y sign` writes it with a plain ed25519 key of the keyring
/// (armor lines of 70 characters, canonical base64, each field of the
/// SshSig blob of its one possible length, nothing after them), in
/// `namespace`, that verifies over `payload`; `None` for anything else,
/// good or not, which then goes through ssh-key's parser and verifier and
/// gets their answer and reason. The same check as that path (the same
/// signed data, the same `ed25519_dalek` verification with the keyring's
/// decompressed key), without the constant-time base64 decoder and the
/// allocations of a parser for every key type: on a history of SSH
/// commits, the parse was a tenth of what was not the signature maths.
fn ed25519_canonical(
    keyring: &Keyring,
    sig: &[u8],
    payload: &[u8],
    namespace: &str,
) -> Option<Verified> {
    use ed25519_dalek::Verifier as _;
    const BEGIN: &[u8] = b"-----BEGIN SSH SIGNATURE-----\n";
    const END: &[u8] = b"\n-----END SSH SIGNATURE-----";
    // magic 6, version 4, public key 4+(4+11+4+32), namespace 4+n,
    // reserved 4, hash 4+6, signature 4+(4+11+4+64).
    const FIXED: usize = 6 + 4 + 55 + 4 + 4 + 10 + 87;
    let body = sig.strip_prefix(BEGIN)?;
    let body = body.strip_suffix(b"\n").unwrap_or(body).strip_suffix(END)?;
    let mut text = [0u8; 4 * (FIXED + 255).div_ceil(3)];
    let mut n = 0;
    let mut lines = body.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if (!last && line.len() != 70) || line.is_empty() || line.len() > 70 {
            return None;
        }
        text.get_mut(n..n + line.len())?.copy_from_slice(line);
        n += line.len();
    }
    let mut blob = [0u8; FIXED + 255];
    let blob = base64_canonical(text.get(..n)?, &mut blob)?;
    let mut r = blob.strip_prefix(b"SSHSIG\0\0\0\x01")?;
    let mut field = |want: Option<usize>| -> Option<&[u8]> {
        let (len, rest) = r.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if want.is_some_and(|w| w != len) || rest.len() < len {
            return None;
        }
        let (v, rest) = rest.split_at(len);
        r = rest;
        Some(v)
    };
    let public = field(Some(4 + 11 + 4 + 32))?;
    let ns = field(None)?;
    let reserved = field(Some(0))?;
    let hash = match field(None)? {
        b"sha512" => ssh_key::HashAlg::Sha512,
        b"sha256" => ssh_key::HashAlg::Sha256,
        _ => return None,
    };
    let signature = field(Some(4 + 11 + 4 + 64))?;
    if !r.is_empty() || !reserved.is_empty() || ns != namespace.as_bytes() {
        return None;
    }
    let key = public.strip_prefix(b"\0\0\0\x0bssh-ed25519\0\0\0\x20")?;
    let sig = signature.strip_prefix(b"\0\0\0\x0bssh-ed25519\0\0\0\x40")?;
    let key =
        ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(key.try_into().ok()?));
    let (idx, _) = keyring.find_ssh(&key)?;
    let vk = keyring.ed25519(idx)?;
    let signature = ed25519_dalek::Signature::from_slice(sig).ok()?;
    let signed = ssh_key::SshSig::signed_data(namespace, hash, payload).ok()?;
    vk.verify(&signed, &signature).ok()?;
    Some(Verified {
        key: idx,
        format: Format::Ssh,
        created: None,
        signing_key: None,
        expires: None,
    })
}

/// Standard base64 with `=` padding, decoded into `out`, when `text` is
/// its one canonical encoding (no other characters, the bits past the
/// last byte zero); `None` otherwise.
fn base64_canonical<'o>(text: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    fn six(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut n = 0;
    let quads = text.chunks_exact(4);
    let count = quads.len();
    for (i, q) in quads.enumerate() {
        let pad = if i + 1 == count {
            q.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut v = 0u32;
        for &c in &q[..4 - pad] {
            v = v << 6 | six(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = v.to_be_bytes();
        let got = &bytes[1..4 - pad];
        // The bits encoded past the last byte must be zero.
        if pad > 0 && (v & ((1 << (8 * pad)) - 1)) != 0 {
            return None;
        }
        out.get_mut(n..n + got.len())?.copy_from_slice(got);
        n += got.len();
    }
    out.get(..n)
}

/// True when `sshsig` is a plain ed25519 signature by the keyring's
/// (already decompressed) key `idx` that verifies over `payload`: exactly
/// the check `ssh_key::PublicKey::verify` makes (same key, same namespace,
/// the SshSig signed data with the signature's reserved field and hash,
/// `ed25519_dalek`'s `Verifier::verify`), without decompressing the key
/// again. False sends the caller to ssh-key, which then gives the reason.
fn ed25519_fast(
    keyring: &Keyring,
    idx: usize,
    public: &ssh_key::PublicKey,
    sshsig: &ssh_key::SshSig,
    namespace: &str,
    payload: &[u8],
) -> bool {
    use ed25519_dalek::Verifier as _;
    let Some(vk) = keyring.ed25519(idx) else {
        return false;
    };
    if sshsig.algorithm() != ssh_key::Algorithm::Ed25519
        || !sshsig.reserved().is_empty()
        || public.key_data() != sshsig.public_key()
        || sshsig.namespace() != namespace
    {
        return false;
    }
    let Ok(signature) = ed25519_dalek::Signature::from_slice(sshsig.signature_bytes()) else {
        return false;
    };
    let Ok(signed) = ssh_key::SshSig::signed_data(namespace, sshsig.hash_alg(), payload) else {
        return false;
    };
    vk.verify(&signed, &signature).is_ok()
}

/// Collects the outcome of sequoia's verification of one detached signature.
struct Helper<'a> {
    keyring: &'a Keyring,
    outcome: Option<Result<Verified, SigError>>,
    sig_count: usize,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        let mut out: Vec<Cert> = Vec::new();
        for id in ids {
            if let Some((_, k)) = self.keyring.find_openpgp(id) {
                if let Material::OpenPgp(c) = &k.material {
                    if !out.iter().any(|o| o.fingerprint() == c.fingerprint()) {
                        out.push((**c).clone());
                    }
                }
            }
        }
        Ok(out)
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure.into_iter() {
            let MessageLayer::SignatureGroup { results } = layer else {
                self.outcome = Some(Err(SigError::Malformed(
                    "unexpected OpenPGP message structure".into(),
                )));
                return Ok(());
            };
            for result in results {
                self.sig_count += 1;
                self.outcome = Some(self.judge(result));
            }
        }
        Ok(())
    }
}

impl Helper<'_> {
    fn judge(
        &self,
        result: Result<openpgp::parse::stream::GoodChecksum, VerificationError>,
    ) -> Result<Verified, SigError> {
        match result {
            Ok(good) => {
                if good.sig.typ() != SignatureType::Binary {
                    return Err(SigError::Malformed(format!(
                        "OpenPGP signature of type {} (only binary document signatures are accepted)",
                        good.sig.typ()
                    )));
                }
                let fpr = good.ka.cert().fingerprint();
                let Some((idx, _)) = self
                    .keyring
                    .find_openpgp(&openpgp::KeyHandle::from(fpr.clone()))
                else {
                    return Err(SigError::UnknownSigner(format!("openpgp cert {fpr}")));
                };
                Ok(Verified {
                    key: idx,
                    format: Format::OpenPgp,
                    signing_key: Some(good.ka.key().fingerprint().to_hex()),
                    created: good
                        .sig
                        .signature_creation_time()
                        .map(time::from_system_time),
                    expires: good
                        .sig
                        .signature_expiration_time()
                        .map(time::from_system_time),
                })
            }
            Err(VerificationError::MissingKey { sig }) => {
                let issuers: Vec<String> = sig.get_issuers().iter().map(|h| h.to_hex()).collect();
                if issuers.is_empty() {
                    Err(SigError::Malformed(
                        "the OpenPGP signature names no issuer".into(),
                    ))
                } else {
                    Err(SigError::UnknownSigner(format!(
                        "openpgp key {}",
                        issuers.join(" / ")
                    )))
                }
            }
            Err(VerificationError::UnboundKey { cert, error, .. }) => Err(SigError::Bad {
                key: format!("openpgp cert {}", cert.fingerprint()),
                reason: format!("the signing key is not valid at the signature's time: {error}"),
            }),
            Err(VerificationError::BadKey { ka, error, .. }) => {
                let what = format!("openpgp cert {}", ka.cert().fingerprint());
                let revokers: Vec<&RevocationKey> = ka.valid_cert().revocation_keys().collect();
                let fpr = ka.key().fingerprint();
                if let Some(m) =
                    revocation_problem(ka.valid_cert().revocation_status(), &what, &revokers)
                        .or_else(|| {
                            revocation_problem(
                                ka.revocation_status(),
                                &format!("the signing key {fpr} of {what}"),
                                &revokers,
                            )
                        })
                {
                    Err(SigError::Revoked(m))
                } else if ka.valid_cert().alive().is_err() || ka.alive().is_err() {
                    Err(SigError::Expired(format!(
                        "{what} had expired when it signed"
                    )))
                } else {
                    Err(SigError::Bad {
                        key: what,
                        reason: error.to_string(),
                    })
                }
            }
            Err(VerificationError::BadSignature { ka, error, .. }) => Err(SigError::Bad {
                key: format!("openpgp cert {}", ka.cert().fingerprint()),
                reason: error.to_string(),
            }),
            Err(VerificationError::MalformedSignature { error, .. }) => Err(SigError::Malformed(
                format!("malformed OpenPGP signature: {error}"),
            )),
            Err(VerificationError::UnknownSignature { .. }) => Err(SigError::Malformed(
                "unsupported OpenPGP signature (unknown version or algorithm)".into(),
            )),
            Err(e) => Err(SigError::Malformed(format!(
                "OpenPGP signature not verified: {e}"
            ))),
        }
    }
}

fn verify_openpgp(
    keyring: &Keyring,
    sig: &[u8],
    payload: &[u8],
    now: Timestamp,
) -> Result<Verified, SigError> {
    let policy = StandardPolicy::new();
    let helper = Helper {
        keyring,
        outcome: None,
        sig_count: 0,
    };
    // Check the packet framing before sequoia sees anything: sequoia
    // would skip any number of Marker packets, at a cost per packet.
    let binary = dearmor_openpgp(sig)?;
    check_single_signature_packet(&binary)?;
    let builder = DetachedVerifierBuilder::from_bytes(&binary)
        .map_err(|e| SigError::Malformed(format!("cannot parse the OpenPGP signature: {e}")))?;
    let mut verifier = builder
        .with_policy(&policy, Some(time::to_system_time(now)), helper)
        .map_err(|e| SigError::Malformed(format!("cannot parse the OpenPGP signature: {e}")))?;
    verifier
        .verify_bytes(payload)
        .map_err(|e| SigError::Malformed(format!("OpenPGP verification failed: {e}")))?;
    let helper = verifier.into_helper();
    if helper.sig_count != 1 {
        return Err(SigError::Malformed(format!(
            "expected exactly one OpenPGP signature, found {}",
            helper.sig_count
        )));
    }
    let verified = helper
        .outcome
        .unwrap_or_else(|| Err(SigError::Malformed("no OpenPGP signature found".into())))?;
    // The same certificate checked at the same time gives the same answer:
    // once per key and signing subkey per run, not once per signature.
    let memo = (
        verified.key,
        verified.signing_key.clone().unwrap_or_default(),
        now,
    );
    keyring
        .cert_checks
        .get_or(memo, || check_openpgp_now(keyring, &verified, &policy, now))?;
    Ok(verified)
}

/// The checks of an OpenPGP signature verified earlier (see
/// [`crate::engine`]'s verification cache) that depend on the time of the
/// check: the certificate and the very signing key must be valid, alive
/// and unrevoked `now`, as [`verify`] requires. Memoized like there.
///
/// # Errors
///
/// [`SigError`]: expired or revoked now.
pub fn recheck_openpgp(
    keyring: &Keyring,
    key: usize,
    signing_key: &str,
    now: Timestamp,
) -> Result<(), SigError> {
    let policy = StandardPolicy::new();
    let verified = Verified {
        key,
        format: Format::OpenPgp,
        created: None,
        signing_key: Some(signing_key.to_string()),
        expires: None,
    };
    keyring
        .cert_checks
        .get_or((key, signing_key.to_string(), now), || {
            check_openpgp_now(keyring, &verified, &policy, now)
        })
}

const PGP_BEGIN: &[u8] = b"-----BEGIN PGP SIGNATURE-----";
const PGP_END: &[u8] = b"-----END PGP SIGNATURE-----";

fn is_base64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Decode an ASCII-armored OpenPGP signature (RFC 9580, section 6):
/// the `BEGIN` line, optional `Key: value` headers and a blank line, the
/// base64 body, an optional `=XXXX` checksum line, the `END` line, and
/// nothing but white space around. Linear in the input.
///
/// The CRC-24 checksum must be well-formed but its value is not checked:
/// RFC 9580 forbids rejecting an object for a CRC mismatch, and the
/// signature itself authenticates the bytes.
fn dearmor_openpgp(sig: &[u8]) -> Result<Vec<u8>, SigError> {
    let bad = |m: &str| SigError::Malformed(format!("malformed OpenPGP armor: {m}"));
    let mut lines = sig
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .skip_while(|l| l.is_empty());
    if lines.next() != Some(PGP_BEGIN) {
        return Err(bad(
            "it does not start with `-----BEGIN PGP SIGNATURE-----`",
        ));
    }
    let mut line = lines.next();
    // Armor headers (`Version: ...`, `Comment: ...`); base64 has no `:`.
    while line.is_some_and(|l| l.contains(&b':')) {
        line = lines.next();
    }
    if line == Some(b"") {
        line = lines.next();
    }
    let mut body: Vec<u8> = Vec::new();
    loop {
        let Some(l) = line else {
            return Err(bad("no `-----END PGP SIGNATURE-----` line"));
        };
        if l == PGP_END {
            break;
        }
        // A line of only padding (`=` or `==`) can follow a line break
        // inside the last quartet; longer `=` lines are the checksum.
        if l.first() == Some(&b'=') && l.len() > 2 {
            if l.len() != 5 || !l.iter().skip(1).all(|&c| is_base64(c)) {
                return Err(bad(
                    "the checksum line is not `=` and four base64 characters",
                ));
            }
            if lines.next() != Some(PGP_END) {
                return Err(bad(
                    "the checksum line is not followed by `-----END PGP SIGNATURE-----`",
                ));
            }
            break;
        }
        if let Some(&c) = l.iter().find(|&&c| !is_base64(c) && c != b'=') {
            return Err(bad(&format!(
                "the body holds the byte 0x{c:02x}, which is not base64"
            )));
        }
        body.extend_from_slice(l);
        line = lines.next();
    }
    if lines.any(|l| !l.is_empty()) {
        return Err(bad("text follows `-----END PGP SIGNATURE-----`"));
    }
    let mut out = vec![0u8; body.len() / 4 * 3 + 3];
    let len = Base64::decode(&body, &mut out)
        .map_err(|e| bad(&format!("the body is not valid base64: {e}")))?
        .len();
    out.truncate(len);
    Ok(out)
}

/// OpenPGP packet tag of a Signature packet.
const TAG_SIGNATURE: u8 = 2;

fn packet_name(tag: u8) -> &'static str {
    match tag {
        1 => "Public-Key Encrypted Session Key",
        2 => "Signature",
        3 => "Symmetric-Key Encrypted Session Key",
        4 => "One-Pass Signature",
        5 => "Secret-Key",
        6 => "Public-Key",
        7 => "Secret-Subkey",
        8 => "Compressed Data",
        9 => "Symmetrically Encrypted Data",
        10 => "Marker",
        11 => "Literal Data",
        12 => "Trust",
        13 => "User ID",
        14 => "Public-Subkey",
        17 => "User Attribute",
        18 => "Symmetrically Encrypted and Integrity Protected Data",
        19 => "Modification Detection Code",
        20 => "AEAD Encrypted Data",
        21 => "Padding",
        _ => "unknown",
    }
}

/// The framing of the packet starting at `pos`: its tag and the offset
/// just past its body. Old and new formats and every definite length
/// encoding are understood. Partial body lengths (new format) and
/// indeterminate lengths (old format) are refused: only data packets may
/// use them, and a signature holds none.
fn packet_at(bin: &[u8], pos: usize) -> Result<(u8, usize), String> {
    let byte = |i: usize| pos.checked_add(i).and_then(|j| bin.get(j)).copied();
    let Some(first) = byte(0) else {
        return Err(format!("no packet at offset {pos}"));
    };
    if first & 0x80 == 0 {
        return Err(format!(
            "byte 0x{first:02x} at offset {pos} is not an OpenPGP packet header"
        ));
    }
    let truncated = |tag: u8| {
        format!(
            "the length of the {} packet (tag {tag}) at offset {pos} is cut short",
            packet_name(tag)
        )
    };
    let be = |from: usize, n: usize, tag: u8| -> Result<usize, String> {
        (from..from + n).try_fold(0usize, |acc, i| {
            byte(i)
                .map(|b| (acc << 8) | usize::from(b))
                .ok_or_else(|| truncated(tag))
        })
    };
    let (tag, header, len) = if first & 0x40 != 0 {
        // New format: tag in the low six bits, then a length of 1, 2 or 5
        // octets, or a partial body length.
        let tag = first & 0x3f;
        let Some(o1) = byte(1) else {
            return Err(truncated(tag));
        };
        match o1 {
            0..=191 => (tag, 2, usize::from(o1)),
            192..=223 => {
                let Some(o2) = byte(2) else {
                    return Err(truncated(tag));
                };
                (tag, 3, ((usize::from(o1) - 192) << 8) + usize::from(o2) + 192)
            }
            255 => (tag, 6, be(2, 4, tag)?),
            224..=254 => {
                return Err(format!(
                    "the {} packet (tag {tag}) at offset {pos} uses a partial body length, which a git signature never does (only data packets may)",
                    packet_name(tag)
                ))
            }
        }
    } else {
        // Old format: tag in bits 5..2, length type in bits 1..0.
        let tag = (first >> 2) & 0x0f;
        match first & 0x03 {
            0 => (tag, 2, be(1, 1, tag)?),
            1 => (tag, 3, be(1, 2, tag)?),
            2 => (tag, 5, be(1, 4, tag)?),
            _ => {
                return Err(format!(
                    "the {} packet (tag {tag}) at offset {pos} has an indeterminate length, which a git signature never does (only data packets may)",
                    packet_name(tag)
                ))
            }
        }
    };
    let end = pos
        .checked_add(header)
        .and_then(|h| h.checked_add(len))
        .filter(|&e| e <= bin.len())
        .ok_or_else(|| {
            format!(
                "the {} packet (tag {tag}) at offset {pos} claims {len} bytes of body, but only {} follow its header",
                packet_name(tag),
                bin.len().saturating_sub(pos.saturating_add(header))
            )
        })?;
    Ok((tag, end))
}

/// A git commit or tag OpenPGP signature is exactly one Signature packet:
/// no Marker packets before it, no packets or bytes after it. Checked on
/// the framing alone, in constant time per packet header.
fn check_single_signature_packet(bin: &[u8]) -> Result<(), SigError> {
    let bad = |m: String| {
        SigError::Malformed(format!(
            "the OpenPGP signature must be exactly one Signature packet: {m}"
        ))
    };
    if bin.is_empty() {
        return Err(bad("it holds no packet at all".into()));
    }
    let (tag, end) = packet_at(bin, 0).map_err(bad)?;
    if tag != TAG_SIGNATURE {
        return Err(bad(format!(
            "it starts with a {} packet (tag {tag})",
            packet_name(tag)
        )));
    }
    if end < bin.len() {
        let rest = bin.len() - end;
        return Err(bad(match packet_at(bin, end) {
            Ok((next, _)) => format!(
                "the Signature packet is followed by {rest} more bytes, starting with a {} packet (tag {next})",
                packet_name(next)
            ),
            Err(e) => format!(
                "the Signature packet is followed by {rest} bytes of trailing garbage ({e})"
            ),
        }));
    }
    Ok(())
}

/// Why `status` makes `what` (a certificate or one of its keys) count as
/// revoked, if it does.
///
/// A revocation issued by someone other than the key holder comes back as
/// `CouldBe`: sequoia cannot verify it without the revoker's certificate,
/// which the policy does not hold. It counts as a revocation all the same
/// (fail closed): the policy's own copy of the certificate says a third
/// party revoked it, and an admin who finds the revocation bogus can
/// remove it from the certificate file.
fn revocation_problem(
    status: RevocationStatus<'_>,
    what: &str,
    revokers: &[&RevocationKey],
) -> Option<String> {
    let revs = match status {
        RevocationStatus::NotAsFarAsWeKnow => return None,
        RevocationStatus::Revoked(_) => return Some(format!("{what} is revoked")),
        RevocationStatus::CouldBe(revs) => revs,
    };
    let issuers: Vec<openpgp::KeyHandle> = revs.iter().flat_map(|r| r.get_issuers()).collect();
    let designated: Vec<String> = revokers
        .iter()
        .map(|rk| rk.revoker().1)
        .filter(|fpr| {
            issuers
                .iter()
                .any(|h| h.aliases(openpgp::KeyHandle::from(*fpr)))
        })
        .map(|fpr| fpr.to_hex())
        .collect();
    let remedy = "countersign cannot verify such a revocation without the revoker's certificate, so it counts it (fail closed); \
        if the revocation is bogus, an admin must remove that revocation signature from the certificate file in the policy";
    Some(if designated.is_empty() {
        let by: Vec<String> = issuers.iter().map(|h| h.to_hex()).collect();
        let by = if by.is_empty() {
            "an unnamed key".to_string()
        } else {
            by.join(" / ")
        };
        format!(
            "{what} carries a revocation by third-party key {by}, which the certificate does not list as a designated revoker: {remedy}"
        )
    } else {
        format!(
            "{what} was revoked by designated revoker {}: {remedy}",
            designated.join(" / ")
        )
    })
}

/// The certificate must also be valid, alive and unrevoked at `now`: a key
/// that expired or was revoked cannot push, whatever its signature's date.
fn check_openpgp_now(
    keyring: &Keyring,
    v: &Verified,
    policy: &StandardPolicy,
    now: Timestamp,
) -> Result<(), SigError> {
    let Some(Material::OpenPgp(cert)) = keyring.get(v.key).map(|k| &k.material) else {
        return Err(SigError::Malformed("internal: key index mismatch".into()));
    };
    let what = format!("openpgp cert {}", cert.fingerprint());
    let t = time::to_system_time(now);
    let revokers: Vec<&RevocationKey> = cert.revocation_keys(policy).collect();
    if let Some(m) = revocation_problem(cert.revocation_status(policy, t), &what, &revokers) {
        return Err(SigError::Revoked(m));
    }
    let valid = cert
        .with_policy(policy, t)
        .map_err(|e| SigError::Expired(format!("{what} is not valid now: {e}")))?;
    valid
        .alive()
        .map_err(|_| SigError::Expired(format!("{what} has expired")))?;
    // The very (sub)key that signed must still be a valid, alive,
    // unrevoked signing key now: the signature's own time is chosen by the
    // signer, so an expired or retired subkey could otherwise backdate.
    let Some(fpr) = v.signing_key.as_deref() else {
        return Err(SigError::Malformed(
            "internal: no signing key recorded".into(),
        ));
    };
    let Some(ka) = valid
        .keys()
        .find(|ka| ka.key().fingerprint().to_hex() == fpr)
    else {
        return Err(SigError::Expired(format!(
            "the signing key {fpr} of {what} is not valid now"
        )));
    };
    if let Some(m) = revocation_problem(
        ka.revocation_status(),
        &format!("the signing key {fpr} of {what}"),
        &revokers,
    ) {
        return Err(SigError::Revoked(m));
    }
    if ka.alive().is_err() {
        return Err(SigError::Expired(format!(
            "the signing key {fpr} of {what} has expired"
        )));
    }
    if !ka.for_signing() {
        return Err(SigError::Bad {
            key: what,
            reason: format!("the key {fpr} is not a signing key"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::CertRevocationBuilder;

    fn check(sig: &[u8]) -> Result<Verified, SigError> {
        verify(&Keyring::default(), sig, b"payload", "git", 0)
    }

    #[test]
    fn garbage_is_malformed_never_accepted() {
        for sig in [
            &b"-----BEGIN SSH SIGNATURE-----\nnot base64 !!\n-----END SSH SIGNATURE-----\n"[..],
            b"-----BEGIN SSH SIGNATURE-----\n",
            b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
            b"-----BEGIN PGP SIGNATURE-----",
            b"-----BEGIN SIGNED MESSAGE-----\nx\n",
            b"",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(check(sig), Err(SigError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(sig)
            );
        }
    }

    #[test]
    fn format_detection() {
        assert_eq!(
            format_of(b"  -----BEGIN SSH SIGNATURE-----"),
            Some(Format::Ssh)
        );
        assert_eq!(
            format_of(b"-----BEGIN PGP SIGNATURE-----"),
            Some(Format::OpenPgp)
        );
        assert_eq!(format_of(b"-----BEGIN PGP MESSAGE-----"), None);
    }

    /// A signature by a signing subkey that has expired by push time is
    /// refused even when it is dated inside the subkey's lifetime, while the
    /// certificate holds another, live signing subkey.
    #[test]
    fn expired_signing_subkey_cannot_backdate() {
        use openpgp::cert::CertBuilder;
        use openpgp::serialize::stream::{Message, Signer};
        use openpgp::types::KeyFlags;
        use std::io::Write as _;
        use std::time::Duration;

        let day = Duration::from_secs(86400);
        let now = std::time::SystemTime::now();
        let t0 = now - day * 30;
        let (cert, _) = CertBuilder::new()
            .set_creation_time(t0)
            .add_userid("Old Key <old@example.com>")
            .add_subkey(KeyFlags::empty().set_signing(), Some(day), None)
            .add_signing_subkey()
            .generate()
            .unwrap();
        let p = StandardPolicy::new();
        let expired_fpr = cert
            .keys()
            .subkeys()
            .find(|k| {
                k.clone()
                    .with_policy(&p, t0 + day / 2)
                    .ok()
                    .and_then(|v| v.key_expiration_time())
                    .is_some()
            })
            .map(|k| k.key().fingerprint())
            .unwrap();
        let signer_key = cert
            .keys()
            .subkeys()
            .secret()
            .find(|k| k.key().fingerprint() == expired_fpr)
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        let payload = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nbackdated\n";
        let mut sig = Vec::new();
        {
            let message = Message::new(&mut sig);
            let message = openpgp::serialize::stream::Armorer::new(message)
                .kind(openpgp::armor::Kind::Signature)
                .build()
                .unwrap();
            let mut signer = Signer::new(message, signer_key)
                .unwrap()
                .detached()
                .creation_time(t0 + day / 2)
                .build()
                .unwrap();
            signer.write_all(payload).unwrap();
            signer.finalize().unwrap();
        }
        let mut keyring = Keyring::default();
        keyring
            .add_openpgp(
                "old",
                cert.strip_secret_key_material(),
                crate::policy::keys::KeyDates::default(),
                crate::policy::keys::KeySource::Inline,
            )
            .unwrap();
        let got = verify(&keyring, &sig, payload, "git", time::from_system_time(now));
        assert!(
            matches!(got, Err(SigError::Expired(ref m)) if m.contains("signing key")),
            "{got:?}"
        );
    }

    const DAY: std::time::Duration = std::time::Duration::from_secs(86400);
    const PAYLOAD: &[u8] = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\npacket tests\n";

    /// A fresh certificate (with secrets) created 30 days ago, with a
    /// signing subkey.
    fn test_cert(name: &str) -> Cert {
        CertBuilder::new()
            .set_creation_time(std::time::SystemTime::now() - DAY * 30)
            .add_userid(name)
            .add_signing_subkey()
            .generate()
            .unwrap()
            .0
    }

    /// An armored detached signature over `payload` by `cert`'s signing
    /// subkey, dated a day ago.
    fn sign_with(cert: &Cert, payload: &[u8]) -> Vec<u8> {
        use openpgp::serialize::stream::{Armorer, Message, Signer};
        use std::io::Write as _;
        let p = StandardPolicy::new();
        let key = cert
            .keys()
            .with_policy(&p, None)
            .secret()
            .for_signing()
            .next()
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        let mut sig = Vec::new();
        {
            let message = Armorer::new(Message::new(&mut sig))
                .kind(openpgp::armor::Kind::Signature)
                .build()
                .unwrap();
            let mut signer = Signer::new(message, key)
                .unwrap()
                .detached()
                .creation_time(std::time::SystemTime::now() - DAY)
                .build()
                .unwrap();
            signer.write_all(payload).unwrap();
            signer.finalize().unwrap();
        }
        sig
    }

    fn keyring_of(cert: &Cert) -> Keyring {
        let mut keyring = Keyring::default();
        keyring
            .add_openpgp(
                "p",
                cert.clone().strip_secret_key_material(),
                crate::policy::keys::KeyDates::default(),
                crate::policy::keys::KeySource::Inline,
            )
            .unwrap();
        keyring
    }

    fn now() -> Timestamp {
        time::from_system_time(std::time::SystemTime::now())
    }

    fn malformed_containing(got: Result<Verified, SigError>, needle: &str) {
        assert!(
            matches!(got, Err(SigError::Malformed(ref m)) if m.contains(needle)),
            "expected Malformed containing {needle:?}, got {got:?}"
        );
    }

    /// A new-format Marker packet (tag 10, body `PGP`), and an old-format one.
    const MARKER_NEW: &[u8] = &[0xca, 0x03, b'P', b'G', b'P'];
    const MARKER_OLD: &[u8] = &[0xa8, 0x03, b'P', b'G', b'P'];

    /// Marker packets before a good signature: sequoia skips them (one by
    /// one, at a cost: a million take seconds), we refuse them outright.
    #[test]
    fn marker_packets_are_refused() {
        let cert = test_cert("Marker <m@example.com>");
        let keyring = keyring_of(&cert);
        let sig = sign_with(&cert, PAYLOAD);
        let good = verify(&keyring, &sig, PAYLOAD, "git", now());
        assert!(good.is_ok(), "{good:?}");
        let binary = dearmor_openpgp(&sig).unwrap();
        for marker in [MARKER_NEW, MARKER_OLD] {
            let mut bytes = marker.to_vec();
            bytes.extend(&binary);
            let armored = crate::signing::approval::armor(&bytes);
            malformed_containing(
                verify(&keyring, &armored, PAYLOAD, "git", now()),
                "starts with a Marker packet (tag 10)",
            );
            // The same through the approval path (binary in a trailer).
            malformed_containing(
                verify_approval(&keyring, &bytes, PAYLOAD, now()),
                "starts with a Marker packet (tag 10)",
            );
        }
        // Only markers: refused on the first packet header, whatever follows.
        let million: Vec<u8> = MARKER_NEW.repeat(1_000_000);
        assert!(matches!(
            check_single_signature_packet(&million),
            Err(SigError::Malformed(ref m)) if m.contains("Marker")
        ));
        // And far over the size limit as armor.
        malformed_containing(
            verify(
                &keyring,
                &crate::signing::approval::armor(&million),
                PAYLOAD,
                "git",
                now(),
            ),
            "65536 bytes",
        );
    }

    /// A good signature followed by anything (another packet, garbage), or
    /// cut short, is refused.
    #[test]
    fn extra_packet_after_signature_is_refused() {
        let cert = test_cert("Trailing <t@example.com>");
        let keyring = keyring_of(&cert);
        let binary = dearmor_openpgp(&sign_with(&cert, PAYLOAD)).unwrap();
        let with = |extra: &[u8]| {
            let mut b = binary.clone();
            b.extend(extra);
            verify(
                &keyring,
                &crate::signing::approval::armor(&b),
                PAYLOAD,
                "git",
                now(),
            )
        };
        malformed_containing(
            with(MARKER_NEW),
            "followed by 5 more bytes, starting with a Marker packet (tag 10)",
        );
        malformed_containing(with(MARKER_OLD), "starting with a Marker packet (tag 10)");
        // A Padding packet (RFC 9580) and a second copy of the signature.
        malformed_containing(
            with(&[0xd5, 0x02, 0, 0]),
            "starting with a Padding packet (tag 21)",
        );
        malformed_containing(
            with(&binary.clone()),
            "starting with a Signature packet (tag 2)",
        );
        malformed_containing(with(b"\x00\x01junk"), "trailing garbage");
        malformed_containing(with(&[0xca]), "trailing garbage");
        // Truncated: the declared body runs past the end.
        let cut = &binary[..binary.len() - 1];
        malformed_containing(
            verify(
                &keyring,
                &crate::signing::approval::armor(cut),
                PAYLOAD,
                "git",
                now(),
            ),
            "only",
        );
        // Still fine on its own.
        let alone = verify(
            &keyring,
            &crate::signing::approval::armor(&binary),
            PAYLOAD,
            "git",
            now(),
        );
        assert!(alone.is_ok(), "{alone:?}");
    }

    /// Every length encoding of both packet formats; partial and
    /// indeterminate lengths and short length fields refused.
    #[test]
    fn packet_framing() {
        let body = |n: usize| vec![0x55u8; n];
        let cat = |h: &[u8], n: usize| [h, &body(n)].concat();
        // New format: one, two and five length octets.
        assert_eq!(packet_at(&cat(&[0xc2, 100], 100), 0), Ok((2, 102)));
        assert_eq!(packet_at(&cat(&[0xc2, 191], 191), 0), Ok((2, 193)));
        assert_eq!(packet_at(&cat(&[0xc2, 192, 0], 192), 0), Ok((2, 195)));
        assert_eq!(packet_at(&cat(&[0xc2, 223, 255], 8383), 0), Ok((2, 8386)));
        assert_eq!(packet_at(&cat(&[0xc2, 0xc3, 0x28], 1000), 0), Ok((2, 1003)));
        assert_eq!(
            packet_at(&cat(&[0xc2, 255, 0, 1, 0x11, 0x70], 70000), 0),
            Ok((2, 70006))
        );
        // Old format: one, two and four length octets.
        assert_eq!(packet_at(&cat(&[0x88, 100], 100), 0), Ok((2, 102)));
        assert_eq!(packet_at(&cat(&[0x89, 0x03, 0xe8], 1000), 0), Ok((2, 1003)));
        assert_eq!(
            packet_at(&cat(&[0x8a, 0, 1, 0x11, 0x70], 70000), 0),
            Ok((2, 70005))
        );
        // A packet further in.
        let two = [cat(&[0xc2, 1], 1), MARKER_OLD.to_vec()].concat();
        assert_eq!(packet_at(&two, 3), Ok((10, 8)));
        // Refused: partial body length, indeterminate length, no header
        // bit, lengths cut short, bodies cut short.
        for (bytes, needle) in [
            (cat(&[0xc2, 0xe9], 512), "partial body length"),
            (cat(&[0x8b], 100), "indeterminate length"),
            (cat(&[0x42], 10), "not an OpenPGP packet header"),
            (vec![0xc2], "cut short"),
            (vec![0xc2, 200], "cut short"),
            (vec![0xc2, 255, 0, 0, 1], "cut short"),
            (vec![0x89, 0x01], "cut short"),
            (vec![0x8a, 0, 0, 0], "cut short"),
            (
                cat(&[0xc2, 100], 99),
                "claims 100 bytes of body, but only 99",
            ),
            (cat(&[0xc2, 255, 0xff, 0xff, 0xff, 0xff], 10), "only 10"),
            (cat(&[0x8a, 0xff, 0xff, 0xff, 0xff], 10), "only 10"),
        ] {
            let got = packet_at(&bytes, 0);
            assert!(
                matches!(got, Err(ref m) if m.contains(needle)),
                "{bytes:02x?}: {got:?}"
            );
            assert!(check_single_signature_packet(&bytes).is_err());
        }
        assert!(check_single_signature_packet(&[]).is_err());
        assert!(check_single_signature_packet(&cat(&[0xc2, 5], 5)).is_ok());
        assert!(check_single_signature_packet(&cat(&[0x8a, 0, 0, 0, 5], 5)).is_ok());
        // A lone User ID or Literal Data packet is not a signature.
        assert!(check_single_signature_packet(&cat(&[0xcd, 3], 3)).is_err());
        assert!(check_single_signature_packet(&cat(&[0xcb, 3], 3)).is_err());
    }

    /// The armor as gpg, sequoia and `approval::armor` write it is read;
    /// anything around or after it is refused.
    #[test]
    fn armor_parsing() {
        let cert = test_cert("Armor <a@example.com>");
        let keyring = keyring_of(&cert);
        let sig = sign_with(&cert, PAYLOAD);
        let binary = dearmor_openpgp(&sig).unwrap();
        let b64 = Base64::encode_string(&binary);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let body = lines.join("\n");
        let ok = |text: String| {
            let got = verify(&keyring, text.as_bytes(), PAYLOAD, "git", now());
            assert!(got.is_ok(), "{text}\n{got:?}");
        };
        // gpg style, with a header, a checksum and CRLF line ends.
        ok(format!(
            "-----BEGIN PGP SIGNATURE-----\nVersion: GnuPG v2\nComment: x\n\n{body}\n=AbCd\n-----END PGP SIGNATURE-----\n"
        ));
        ok(format!(
            "-----BEGIN PGP SIGNATURE-----\r\n\r\n{}\r\n-----END PGP SIGNATURE-----\r\n",
            lines.join("\r\n")
        ));
        // No blank line, leading and trailing white space.
        ok(format!(
            "\n  -----BEGIN PGP SIGNATURE-----\n{body}\n-----END PGP SIGNATURE-----  \n\n"
        ));
        // `approval::armor` wraps at 70 characters, so padding can land on
        // a line of its own.
        for extra in 0..3 {
            let mut b = binary.clone();
            b.truncate(binary.len() - extra);
            let armored = String::from_utf8(crate::signing::approval::armor(&b)).unwrap();
            assert_eq!(dearmor_openpgp(armored.as_bytes()), Ok(b));
        }
        let padded_line = "-----BEGIN PGP SIGNATURE-----\n\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n==\n-----END PGP SIGNATURE-----\n";
        assert_eq!(
            dearmor_openpgp(padded_line.as_bytes()).map(|b| b.len()),
            Ok(52)
        );
        for (text, needle) in [
            (
                format!("-----BEGIN PGP SIGNATURE-----\n\n{body}\n-----END PGP SIGNATURE-----\ntrailing\n"),
                "text follows",
            ),
            (format!("-----BEGIN PGP SIGNATURE-----\n\n{body}\n"), "no `-----END"),
            (
                format!("-----BEGIN PGP SIGNATURE-----\n\n{body}\n=AbCdE\n-----END PGP SIGNATURE-----\n"),
                "checksum line",
            ),
            (
                format!("-----BEGIN PGP SIGNATURE-----\n\n{body}\n=AbCd\n{body}\n-----END PGP SIGNATURE-----\n"),
                "checksum line is not followed",
            ),
            (
                format!("-----BEGIN PGP SIGNATURE-----\n\n{body}!\n-----END PGP SIGNATURE-----\n"),
                "not base64",
            ),
            (
                format!("-----BEGIN PGP SIGNATURE-----\n\n{body}A\n-----END PGP SIGNATURE-----\n"),
                "not valid base64",
            ),
            (
                format!("-----BEGIN PGP SIGNATURE----- x\n\n{body}\n-----END PGP SIGNATURE-----\n"),
                "does not start with",
            ),
            (
                format!("-----BEGIN PGP MESSAGE-----\n\n{body}\n-----END PGP MESSAGE-----\n"),
                "does not start with",
            ),
        ] {
            assert!(
                matches!(dearmor_openpgp(text.as_bytes()), Err(SigError::Malformed(ref m)) if m.contains(needle)),
                "{needle}: {:?}",
                dearmor_openpgp(text.as_bytes())
            );
        }
    }

    /// Signatures over the hard cap are refused before any parsing, in
    /// both formats and through both entry points.
    #[test]
    fn oversized_signatures_are_refused() {
        let cert = test_cert("Big <b@example.com>");
        let keyring = keyring_of(&cert);
        let limit = "65536 bytes";
        let big_pgp = [
            &b"-----BEGIN PGP SIGNATURE-----\n\n"[..],
            &b"A".repeat(MAX_SIGNATURE_BYTES),
            b"\n-----END PGP SIGNATURE-----\n",
        ]
        .concat();
        malformed_containing(verify(&keyring, &big_pgp, PAYLOAD, "git", now()), limit);
        let big_ssh = [
            &b"-----BEGIN SSH SIGNATURE-----\n"[..],
            &b"A".repeat(MAX_SIGNATURE_BYTES),
            b"\n-----END SSH SIGNATURE-----\n",
        ]
        .concat();
        malformed_containing(verify(&keyring, &big_ssh, PAYLOAD, "git", now()), limit);
        // A valid signature padded (in an armor header) past the limit.
        let sig = sign_with(&cert, PAYLOAD);
        let padded = [
            &b"-----BEGIN PGP SIGNATURE-----\nComment: "[..],
            &b"x".repeat(MAX_SIGNATURE_BYTES),
            &sig[b"-----BEGIN PGP SIGNATURE-----".len()..],
        ]
        .concat();
        malformed_containing(verify(&keyring, &padded, PAYLOAD, "git", now()), limit);
        let unpadded = [
            &b"-----BEGIN PGP SIGNATURE-----\nComment: x"[..],
            &sig[b"-----BEGIN PGP SIGNATURE-----".len()..],
        ]
        .concat();
        assert!(verify(&keyring, &unpadded, PAYLOAD, "git", now()).is_ok());
        // Approvals: the binary itself, and the binary whose armor is.
        let mut huge = b"SSHSIG".to_vec();
        huge.resize(MAX_SIGNATURE_BYTES + 1, 0);
        malformed_containing(verify_approval(&keyring, &huge, PAYLOAD, now()), limit);
        huge.truncate(MAX_SIGNATURE_BYTES - 1000);
        malformed_containing(verify_approval(&keyring, &huge, PAYLOAD, now()), limit);
    }

    /// A certificate revoked by its designated revoker (a revocation
    /// sequoia reports as `CouldBe`, unable to check it) no longer signs;
    /// nor one revoked by some other third party.
    #[test]
    fn designated_revoker_revocation_is_refused() {
        use openpgp::types::ReasonForRevocation;
        let p = StandardPolicy::new();
        let revoker = test_cert("Revoker <r@example.com>");
        let stranger = test_cert("Stranger <s@example.com>");
        let cert = CertBuilder::new()
            .set_creation_time(std::time::SystemTime::now() - DAY * 30)
            .add_userid("Alice <alice@example.com>")
            .add_signing_subkey()
            .set_revocation_keys(vec![(&revoker).into()])
            .generate()
            .unwrap()
            .0;
        let revoke_by = |who: &Cert| {
            let mut signer = who
                .primary_key()
                .key()
                .clone()
                .parts_into_secret()
                .unwrap()
                .into_keypair()
                .unwrap();
            let rev = CertRevocationBuilder::new()
                .set_signature_creation_time(std::time::SystemTime::now() - DAY * 2)
                .unwrap()
                .set_reason_for_revocation(ReasonForRevocation::KeyCompromised, b"stolen")
                .unwrap()
                .build(&mut signer, &cert, None)
                .unwrap();
            cert.clone().insert_packets(rev).unwrap().0
        };
        let sig = sign_with(&cert, PAYLOAD);
        let fine = verify(&keyring_of(&cert), &sig, PAYLOAD, "git", now());
        assert!(fine.is_ok(), "{fine:?}");

        let revoked = revoke_by(&revoker);
        assert!(matches!(
            revoked.revocation_status(&p, None),
            RevocationStatus::CouldBe(_)
        ));
        let got = verify(&keyring_of(&revoked), &sig, PAYLOAD, "git", now());
        let revoker_fpr = revoker.fingerprint().to_hex();
        assert!(
            matches!(got, Err(SigError::Revoked(ref m))
                if m.contains("revoked by designated revoker")
                    && m.contains(&revoker_fpr)
                    && m.contains("remove that revocation")),
            "{got:?}"
        );
        // Approvals too.
        let binary = dearmor_openpgp(&sig).unwrap();
        let got = verify_approval(&keyring_of(&revoked), &binary, PAYLOAD, now());
        assert!(matches!(got, Err(SigError::Revoked(_))), "{got:?}");

        let revoked = revoke_by(&stranger);
        let got = verify(&keyring_of(&revoked), &sig, PAYLOAD, "git", now());
        assert!(
            matches!(got, Err(SigError::Revoked(ref m))
                if m.contains("not list as a designated revoker")),
            "{got:?}"
        );
    }

    /// An `sk-ssh-ed25519` signature counts only with the user-presence
    /// flag set (built by hand: no hardware token in the tests).
    /// A signature as ssh-keygen writes it takes the canonical path, with
    /// the answer of ssh-key's; anything that is not exactly that shape
    /// (other wrapping, non-canonical base64, bytes after the blob, another
    /// namespace, an unknown key, another payload) does not, and gets
    /// ssh-key's answer.
    #[test]
    fn ssh_keygen_signatures_take_the_canonical_path_with_the_same_answer() {
        use std::process::Command;
        let dir = std::env::temp_dir().join(format!("cs-sig-canon-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("k");
        let payload = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nhello\n";
        std::fs::write(dir.join("p"), payload).unwrap();
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(ok.success());
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", "git", "-f"])
            .arg(&key)
            .arg(dir.join("p"))
            .status()
            .unwrap();
        assert!(ok.success());
        let sig = std::fs::read(dir.join("p.sig")).unwrap();
        let public = std::fs::read_to_string(dir.join("k.pub")).unwrap();
        let mut keyring = Keyring::default();
        keyring
            .add_ssh(
                "dev",
                crate::policy::keys::parse_ssh(public.trim()).unwrap(),
                crate::policy::keys::KeyDates::default(),
            )
            .unwrap();
        let fast = ed25519_canonical(&keyring, &sig, payload, "git").expect("canonical path");
        let slow = verify_ssh_parsed(&keyring, &sig, payload, "git").unwrap();
        assert_eq!((fast.key, slow.key), (0, 0));
        assert!(ed25519_canonical(&Keyring::default(), &sig, payload, "git").is_none());
        assert!(matches!(
            verify(&Keyring::default(), &sig, payload, "git", 0),
            Err(SigError::UnknownSigner(_))
        ));
        assert!(ed25519_canonical(&keyring, &sig, b"other", "git").is_none());
        assert!(matches!(
            verify(&keyring, &sig, b"other", "git", 0),
            Err(SigError::Bad { .. })
        ));
        assert!(ed25519_canonical(&keyring, &sig, payload, "file").is_none());
        assert!(matches!(
            verify(&keyring, &sig, payload, "file", 0),
            Err(SigError::Namespace { .. })
        ));
        // The same blob in other shapes.
        let text = std::str::from_utf8(&sig).unwrap();
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let armor = |b64: &str, width: usize| {
            let mut s = String::from("-----BEGIN SSH SIGNATURE-----\n");
            for chunk in b64.as_bytes().chunks(width) {
                s.push_str(std::str::from_utf8(chunk).unwrap());
                s.push('\n');
            }
            s.push_str("-----END SSH SIGNATURE-----\n");
            s.into_bytes()
        };
        assert_eq!(armor(&b64, 70), sig, "ssh-keygen wraps at 70");
        let blob = Base64::decode_vec(&b64).unwrap();
        let mut longer = blob.clone();
        longer.push(0);
        let mut odd_bits = b64.clone().into_bytes();
        let at = b64.trim_end_matches('=').len() - 1;
        // The next character sets the lowest bit, which is past the end.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let six = ALPHABET.iter().position(|&c| c == odd_bits[at]).unwrap();
        odd_bits[at] = ALPHABET[six + 1];
        let odd_bits = String::from_utf8(odd_bits).unwrap();
        assert!(b64.ends_with('='), "the blob's length leaves padding");
        for (what, shape) in [
            ("wrapped at 64", armor(&b64, 64)),
            ("CRLF", text.replace('\n', "\r\n").into_bytes()),
            (
                "a byte after the blob",
                armor(&Base64::encode_string(&longer), 70),
            ),
            ("bits past the end", armor(&odd_bits, 70)),
            ("leading space", [b" ", &sig[..]].concat()),
        ] {
            assert!(
                ed25519_canonical(&keyring, &shape, payload, "git").is_none(),
                "{what}"
            );
            let fast_or_not = verify(&keyring, &shape, payload, "git", 0);
            let parsed = verify_ssh_parsed(&keyring, &shape, payload, "git");
            assert_eq!(format!("{fast_or_not:?}"), format!("{parsed:?}"), "{what}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn security_key_signature_needs_user_presence() {
        use ::signature::Signer as _;
        use sha2::{Digest, Sha256};
        use ssh_key::private::Ed25519Keypair;
        use ssh_key::public::{KeyData, SkEd25519};
        use ssh_key::{Algorithm, HashAlg, SshSig};

        let pair = Ed25519Keypair::from_seed(&[7u8; 32]);
        let app = "ssh:";
        let public = ssh_key::PublicKey::from(KeyData::SkEd25519(SkEd25519::new(pair.public, app)));
        let mut keyring = Keyring::default();
        keyring
            .add_ssh(
                "sk",
                public.clone(),
                crate::policy::keys::KeyDates::default(),
            )
            .unwrap();
        let payload = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nsk\n";
        let sign = |flags: u8| -> Vec<u8> {
            let inner = SshSig::signed_data("git", HashAlg::Sha512, payload).unwrap();
            let trailer = [flags, 0, 0, 0, 1];
            let mut data = Vec::new();
            data.extend(Sha256::digest(app.as_bytes()));
            data.extend(trailer);
            data.extend(Sha256::digest(&inner));
            let sig = pair.try_sign(&data).unwrap();
            let mut blob = sig.as_bytes().to_vec();
            blob.extend(trailer);
            let sig = ssh_key::Signature::new(Algorithm::SkEd25519, blob).unwrap();
            let sshsig =
                SshSig::new(public.key_data().clone(), "git", HashAlg::Sha512, sig).unwrap();
            sshsig.to_pem(ssh_key::LineEnding::LF).unwrap().into_bytes()
        };
        let touched = verify(&keyring, &sign(SK_USER_PRESENT), payload, "git", 0);
        assert!(touched.is_ok(), "{touched:?}");
        let silent = verify(&keyring, &sign(0), payload, "git", 0);
        assert!(
            matches!(silent, Err(SigError::Bad { ref reason, .. }) if reason.contains("user presence")),
            "{silent:?}"
        );
    }
}
