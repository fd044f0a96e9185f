//! Verify one detached signature over one payload against the keyring.
//!
//! Two formats: SSH signatures (`-----BEGIN SSH SIGNATURE-----`, checked
//! with `ssh-key`, and only in the namespace the caller asks for) and
//! OpenPGP (checked with sequoia under its StandardPolicy: the certificate
//! and signing (sub)key must be valid and unrevoked at signature time, and
//! at the time of the check). The answer is the policy key that made the
//! signature, or a precise reason it does not count. Person dates and roles
//! are the caller's business.

use openpgp::cert::prelude::*;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::{RevocationStatus, SignatureType};
use sequoia_openpgp as openpgp;

use crate::keys::{ssh_fingerprint, Keyring, Material};
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
pub fn verify_approval(
    keyring: &Keyring,
    binary: &[u8],
    statement: &[u8],
    now: Timestamp,
) -> Result<Verified, SigError> {
    let armored = crate::approval::armor(binary);
    verify(
        keyring,
        &armored,
        statement,
        crate::approval::NAMESPACE,
        now,
    )
}

/// Verify `sig` over `payload`. SSH signatures must carry `namespace`.
/// `now` is the time of the check (push time).
pub fn verify(
    keyring: &Keyring,
    sig: &[u8],
    payload: &[u8],
    namespace: &str,
    now: Timestamp,
) -> Result<Verified, SigError> {
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
    })
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
                if matches!(
                    ka.valid_cert().revocation_status(),
                    RevocationStatus::Revoked(_)
                ) || matches!(ka.revocation_status(), RevocationStatus::Revoked(_))
                {
                    Err(SigError::Revoked(format!("{what} is revoked")))
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
    let builder = DetachedVerifierBuilder::from_bytes(sig)
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
    check_openpgp_now(keyring, &verified, &policy, now)?;
    Ok(verified)
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
    if matches!(
        cert.revocation_status(policy, t),
        RevocationStatus::Revoked(_)
    ) {
        return Err(SigError::Revoked(format!("{what} is revoked")));
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
    if matches!(ka.revocation_status(), RevocationStatus::Revoked(_)) {
        return Err(SigError::Revoked(format!(
            "the signing key {fpr} of {what} is revoked"
        )));
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
                crate::keys::KeyDates::default(),
                crate::keys::KeySource::Inline,
            )
            .unwrap();
        let got = verify(&keyring, &sig, payload, "git", time::from_system_time(now));
        assert!(
            matches!(got, Err(SigError::Expired(ref m)) if m.contains("signing key")),
            "{got:?}"
        );
    }

    /// An `sk-ssh-ed25519` signature counts only with the user-presence
    /// flag set (built by hand: no hardware token in the tests).
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
            .add_ssh("sk", public.clone(), crate::keys::KeyDates::default())
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
