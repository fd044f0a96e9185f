//! The keyring: every public key in the policy, mapped to exactly one person.
//!
//! SSH keys are matched by their SHA-256 fingerprint; OpenPGP certificates
//! by the fingerprint of every (sub)key they hold. A key held by two people
//! is refused when the policy loads, so a signature always names at most
//! one person. Secret key material is never needed and never read.

use std::collections::HashMap;
use std::path::Path;

use openpgp::parse::Parse;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::time::Timestamp;

/// Dates set on a single key entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyDates {
    /// Not accepted from this instant on.
    pub expires: Option<Timestamp>,
    /// Withdrawn at this instant.
    pub revoked: Option<Timestamp>,
    /// Retired at this instant: new pushes signed with it are rejected,
    /// signatures made before it stay valid in `verify` and reports.
    pub retired: Option<Timestamp>,
}

/// Where a key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Inline in the policy.
    Inline,
    /// From a certificate file (path as written in the policy).
    File(String),
}

/// The public material of a policy key.
#[derive(Debug, Clone)]
pub enum Material {
    /// An SSH public key.
    Ssh(ssh_key::PublicKey),
    /// An OpenPGP certificate (public).
    OpenPgp(Box<Cert>),
}

/// One key of one person.
#[derive(Debug, Clone)]
pub struct PolicyKey {
    /// Person id.
    pub person: String,
    /// `SHA256:...` for SSH, the certificate fingerprint for OpenPGP.
    pub fingerprint: String,
    /// The key itself.
    pub material: Material,
    /// Per-key dates.
    pub dates: KeyDates,
    /// Where it was declared.
    pub source: KeySource,
}

impl PolicyKey {
    /// `ssh SHA256:...` or `openpgp 0123...`, for messages.
    pub fn describe(&self) -> String {
        match self.material {
            Material::Ssh(_) => format!("ssh key {}", self.fingerprint),
            Material::OpenPgp(_) => format!("openpgp cert {}", self.fingerprint),
        }
    }
}

/// All keys of a policy, with lookup indexes.
///
/// Everything a signature check needs from a key is prepared once, when
/// the key is added: SSH keys are found by their key data (no fingerprint
/// is computed per signature) and ed25519 keys are kept decompressed.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<PolicyKey>,
    /// SSH key data -> index.
    ssh: HashMap<ssh_key::public::KeyData, usize>,
    /// Index -> the decompressed ed25519 point of a plain ed25519 SSH key.
    ed25519: HashMap<usize, ed25519_dalek::VerifyingKey>,
    /// Every primary and subkey fingerprint (hex, upper case) and key id.
    openpgp: HashMap<String, usize>,
    /// Answers of the certificate checks that depend only on the key, the
    /// signing subkey and the time of the check (see
    /// [`crate::signing::signature`]), computed once per run.
    pub(crate) cert_checks: CertChecks,
}

/// Key index, signing (sub)key fingerprint, time of the check.
type CertCheckKey = (usize, String, Timestamp);
/// One remembered answer. The answers are the signing layer's; they are
/// kept type-erased so that the policy does not depend on it.
type CertCheck = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// A memo of certificate checks, shared by the threads that verify.
#[derive(Debug, Default)]
pub(crate) struct CertChecks(std::sync::Mutex<HashMap<CertCheckKey, CertCheck>>);

impl CertChecks {
    /// The memoized answer for `key`, or `check()` (then remembered).
    pub(crate) fn get_or<T: Clone + Send + Sync + 'static>(
        &self,
        key: CertCheckKey,
        check: impl FnOnce() -> T,
    ) -> T {
        // A poisoned lock only means another thread panicked mid-insert;
        // the map holds complete answers only, so keep using it.
        let known = match self.0.lock() {
            Ok(g) => g.get(&key).cloned(),
            Err(p) => p.into_inner().get(&key).cloned(),
        };
        if let Some(r) = known.and_then(|a| a.downcast_ref::<T>().cloned()) {
            return r;
        }
        let r = check();
        let stored: CertCheck = std::sync::Arc::new(r.clone());
        match self.0.lock() {
            Ok(mut g) => g.insert(key, stored),
            Err(p) => p.into_inner().insert(key, stored),
        };
        r
    }
}

impl Keyring {
    /// All keys.
    pub fn keys(&self) -> &[PolicyKey] {
        &self.keys
    }

    /// Add an SSH key for `person`. Fails with the other holder's id if the
    /// key already belongs to someone.
    ///
    /// # Errors
    ///
    /// [`KeyError::HeldBy`] when another person holds the key.
    pub fn add_ssh(
        &mut self,
        person: &str,
        key: ssh_key::PublicKey,
        dates: KeyDates,
    ) -> Result<(), KeyError> {
        let fpr = ssh_fingerprint(key.key_data());
        if let Some(&i) = self.ssh.get(key.key_data()) {
            return Err(KeyError::HeldBy(self.keys[i].person.clone()));
        }
        self.ssh.insert(key.key_data().clone(), self.keys.len());
        if let ssh_key::public::KeyData::Ed25519(k) = key.key_data() {
            // A point that does not decompress is left to ssh-key, which
            // then refuses each signature with its own message.
            if let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&k.0) {
                self.ed25519.insert(self.keys.len(), vk);
            }
        }
        self.keys.push(PolicyKey {
            person: person.to_string(),
            fingerprint: fpr,
            material: Material::Ssh(key),
            dates,
            source: KeySource::Inline,
        });
        Ok(())
    }

    /// Add an OpenPGP certificate for `person`. Fails with the other
    /// holder's id if any of its keys already belongs to someone else.
    ///
    /// # Errors
    ///
    /// [`KeyError::HeldBy`] when another person holds a key of the certificate.
    pub fn add_openpgp(
        &mut self,
        person: &str,
        cert: Cert,
        dates: KeyDates,
        source: KeySource,
    ) -> Result<(), KeyError> {
        let handles: Vec<String> = cert
            .keys()
            .flat_map(|ka| [ka.key().fingerprint().to_hex(), ka.key().keyid().to_hex()])
            .collect();
        for h in &handles {
            if let Some(&i) = self.openpgp.get(h) {
                return Err(KeyError::HeldBy(self.keys[i].person.clone()));
            }
        }
        let idx = self.keys.len();
        for h in handles {
            self.openpgp.insert(h, idx);
        }
        self.keys.push(PolicyKey {
            person: person.to_string(),
            fingerprint: cert.fingerprint().to_hex(),
            material: Material::OpenPgp(Box::new(cert)),
            dates,
            source,
        });
        Ok(())
    }

    /// The policy key with this SSH public key, if any.
    pub fn find_ssh(&self, key: &ssh_key::public::KeyData) -> Option<(usize, &PolicyKey)> {
        let i = *self.ssh.get(key)?;
        Some((i, &self.keys[i]))
    }

    /// The decompressed ed25519 key of the plain ed25519 SSH key at `i`.
    pub(crate) fn ed25519(&self, i: usize) -> Option<&ed25519_dalek::VerifyingKey> {
        self.ed25519.get(&i)
    }

    /// The policy key holding a (sub)key with this handle, if any.
    pub fn find_openpgp(&self, handle: &openpgp::KeyHandle) -> Option<(usize, &PolicyKey)> {
        let hex = match handle {
            openpgp::KeyHandle::Fingerprint(f) => f.to_hex(),
            openpgp::KeyHandle::KeyID(k) => k.to_hex(),
        };
        let i = *self.openpgp.get(&hex)?;
        Some((i, &self.keys[i]))
    }

    /// Key by index.
    pub fn get(&self, i: usize) -> Option<&PolicyKey> {
        self.keys.get(i)
    }
}

/// `SHA256:<base64>` as `ssh-keygen -l` shows it.
pub fn ssh_fingerprint(key: &ssh_key::public::KeyData) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}

/// Why a key or certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key (or a key of the certificate) already belongs to this person.
    #[error("already held by person `{0}`")]
    HeldBy(String),
    /// More than one line in one SSH key entry.
    #[error("one key per entry: the text contains a line break")]
    LineBreak,
    /// Not an OpenSSH public key line.
    #[error("{0} (expected `ssh-ed25519 AAAA... comment`)")]
    Unparsable(String),
    /// An RSA key below [`MIN_RSA_BITS`].
    #[error("RSA key of {0} bits is too weak; use at least {MIN_RSA_BITS} bits, or ed25519")]
    WeakRsa(usize),
    /// DSA keys are never accepted.
    #[error("DSA (ssh-dss) keys are not accepted; use ed25519")]
    Dsa,
    /// A key type countersign cannot verify.
    #[error("unsupported SSH key type `{0}`")]
    Unsupported(String),
    /// The certificate file cannot be read.
    #[error("{0}")]
    Unreadable(String),
    /// Not an OpenPGP certificate.
    #[error("not an OpenPGP certificate: {0}")]
    NotACert(String),
    /// The file holds secret key material.
    #[error("the file holds secret key material; export the public certificate with `gpg --armor --export`")]
    Secret,
    /// The file holds no certificate.
    #[error("the file holds no certificate")]
    Empty,
}

/// Parse one OpenSSH public key line (`type base64 [comment]`).
///
/// # Errors
///
/// [`KeyError`] when the line is not one usable public key.
pub fn parse_ssh(line: &str) -> Result<ssh_key::PublicKey, KeyError> {
    let line = line.trim();
    if line.contains('\n') {
        return Err(KeyError::LineBreak);
    }
    // An allowed-signers or authorized_keys line may start with options;
    // the policy wants the bare key so nothing is silently ignored.
    let key =
        ssh_key::PublicKey::from_openssh(line).map_err(|e| KeyError::Unparsable(e.to_string()))?;
    check_ssh_strength(key.key_data())?;
    Ok(key)
}

/// Minimum RSA modulus size accepted.
pub const MIN_RSA_BITS: usize = 2048;

/// Refuse key types that cannot be verified or are too weak to trust.
fn check_ssh_strength(key: &ssh_key::public::KeyData) -> Result<(), KeyError> {
    use ssh_key::public::KeyData;
    match key {
        KeyData::Ed25519(_)
        | KeyData::Ecdsa(_)
        | KeyData::SkEd25519(_)
        | KeyData::SkEcdsaSha2NistP256(_) => Ok(()),
        KeyData::Rsa(rsa) => {
            let bits = rsa.n.as_positive_bytes().map_or(0, |b| {
                let lead = b.first().map_or(0, |x| x.leading_zeros() as usize);
                b.len() * 8 - lead
            });
            if bits < MIN_RSA_BITS {
                Err(KeyError::WeakRsa(bits))
            } else {
                Ok(())
            }
        }
        KeyData::Dsa(_) => Err(KeyError::Dsa),
        other => Err(KeyError::Unsupported(other.algorithm().to_string())),
    }
}

/// Read every certificate in an armored or binary file. Secret key
/// material is refused: the policy must only hold public certificates.
///
/// # Errors
///
/// [`KeyError`] when the file cannot be read or holds no usable public
/// certificate.
pub fn read_certs(path: &Path) -> Result<Vec<Cert>, KeyError> {
    let bytes = std::fs::read(path).map_err(|e| KeyError::Unreadable(e.to_string()))?;
    parse_certs(&bytes)
}

/// Every certificate in armored or binary `bytes`; as [`read_certs`].
///
/// # Errors
///
/// [`KeyError`] when `bytes` hold no usable public certificate, or secret
/// key material.
pub fn parse_certs(bytes: &[u8]) -> Result<Vec<Cert>, KeyError> {
    let parser = openpgp::cert::CertParser::from_bytes(bytes)
        .map_err(|e| KeyError::NotACert(e.to_string()))?;
    let mut certs = Vec::new();
    for c in parser {
        let cert = c.map_err(|e| KeyError::NotACert(e.to_string()))?;
        if cert.is_tsk() {
            return Err(KeyError::Secret);
        }
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(certs)
}
