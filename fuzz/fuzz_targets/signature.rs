//! `signature::format_of`, `signature::verify` and
//! `signature::verify_approval` on arbitrary signature bytes.
//!
//! Every input is tried as an armored signature (SSH or OpenPGP armor, over
//! `keys/payload.txt`, namespace `git`) and as the binary signature of an
//! approval trailer (over `keys/statement.txt`). Two keyrings:
//!
//! - an empty one: the answer must never be `Ok`;
//! - a small fixed one, built through `policy::parse` from the public keys
//!   in `fuzz/keys/` (one SSH ed25519 key, one OpenPGP certificate) whose
//!   throwaway secret halves made the seed signatures. An `Ok` is only
//!   possible for a genuine signature by one of them, so when it happens
//!   the target checks that it is bound to what was signed: the same
//!   signature over the payload with one byte appended, or (SSH) in another
//!   namespace, or for an approval over the commit payload, must be refused,
//!   and the key index must name a key of the keyring in the format that
//!   `format_of` reports.
//!
//! Never panics.
#![no_main]

use std::sync::OnceLock;

use countersign::signing::approval::{armor, NAMESPACE};
use countersign::policy::keys::Keyring;
use countersign::signing::signature::{format_of, verify, verify_approval, Format};
use countersign::time::Timestamp;
use libfuzzer_sys::fuzz_target;

const PAYLOAD: &[u8] = include_bytes!("../keys/payload.txt");
const STATEMENT: &[u8] = include_bytes!("../keys/statement.txt");
const SSH_PUB: &str = include_str!("../keys/ssh.pub");
const PGP_CERT: &[u8] = include_bytes!("../keys/openpgp.asc");
/// Push time: 2033-05-18, after the test keys were made (they never expire).
const NOW: Timestamp = 2_000_000_000;

fn keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("countersign-fuzz-sig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fuzz.asc"), PGP_CERT).unwrap();
        let text = format!(
            "[repository]\nid = \"acme/payments\"\n[roles]\ndev = \"d\"\n\
             [people.ssh]\nroles = [\"dev\"]\nssh = [\"{}\"]\n\
             [people.pgp]\nroles = [\"dev\"]\nopenpgp = [\"fuzz.asc\"]\n",
            SSH_PUB.trim()
        );
        let policy = countersign::policy::parse(&text, &dir)
            .unwrap_or_else(|p| panic!("fixed fuzz policy does not load: {p:?}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(policy.keyring.keys().len(), 2);
        policy.keyring
    })
}

fn tampered(payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    p.push(b'x');
    p
}

/// `COUNTERSIGN_FUZZ_DEBUG=1`: print each input's results with the fixed
/// keyring (to check that the seeds reach a successful verification).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("COUNTERSIGN_FUZZ_DEBUG").is_some_and(|v| v == "1"))
}

fuzz_target!(|data: &[u8]| {
    let empty = Keyring::default();
    let ring = keyring();
    let format = format_of(data);
    if debug() {
        eprintln!(
            "format {format:?}\n  verify: {:?}\n  verify_approval: {:?}",
            verify(ring, data, PAYLOAD, "git", NOW),
            verify_approval(ring, data, STATEMENT, NOW)
        );
    }

    // As an armored signature over a commit payload.
    let r = verify(&empty, data, PAYLOAD, "git", NOW);
    assert!(r.is_err(), "empty keyring accepted a signature: {r:?}");
    if format.is_none() {
        assert!(verify(ring, data, PAYLOAD, "git", NOW).is_err());
    } else if let Ok(v) = verify(ring, data, PAYLOAD, "git", NOW) {
        assert!(v.key < ring.keys().len());
        assert_eq!(Some(v.format), format, "verified in another format");
        let t = verify(ring, data, &tampered(PAYLOAD), "git", NOW);
        assert!(t.is_err(), "signature also verifies over another payload: {t:?}");
        if v.format == Format::Ssh {
            let t = verify(ring, data, PAYLOAD, NAMESPACE, NOW);
            assert!(t.is_err(), "SSH signature verifies in another namespace: {t:?}");
        }
    }

    // As the binary signature of an approval.
    let r = verify_approval(&empty, data, STATEMENT, NOW);
    assert!(r.is_err(), "empty keyring accepted an approval: {r:?}");
    if let Ok(v) = verify_approval(ring, data, STATEMENT, NOW) {
        assert!(v.key < ring.keys().len());
        assert_eq!(Some(v.format), format_of(&armor(data)));
        let t = verify_approval(ring, data, &tampered(STATEMENT), NOW);
        assert!(t.is_err(), "approval also verifies over another statement: {t:?}");
        if v.format == Format::Ssh {
            // An approval signature is never a commit signature.
            let t = verify(ring, &armor(data), STATEMENT, "git", NOW);
            assert!(t.is_err(), "approval signature verifies as namespace git: {t:?}");
        }
    }
});
