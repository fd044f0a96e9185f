//! The RSA verification limit of this machine, for an SSH RSA key: how
//! many SshSig signatures (namespace `git`, SHA-512, `rsa-sha2-512`)
//! ssh-key verifies per second, the call countersign makes for an RSA
//! signature, on one core and on every core. The reference for the RSA
//! row of `bench/perf/run.py` ("within 1.2x of the RSA verify limit").
//!
//!     cargo run --release --example rsa_rate -- KEY [SECONDS]
//!
//! KEY: an OpenSSH private key file of type RSA (e.g. the benchmark's
//! `dev-rsa`, or one from `ssh-keygen -t rsa -b 3072 -N '' -f KEY`).

use ssh_key::{PrivateKey, SshSig};

#[path = "shared/rate.rs"]
mod shared;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: rsa_rate KEY [SECONDS]  (an OpenSSH RSA private key file)");
        std::process::exit(2);
    };
    let secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let key = match PrivateKey::read_openssh_file(std::path::Path::new(&path)) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(2);
        }
    };
    let bits = match key.public_key().key_data().rsa() {
        Some(rsa) => rsa.n.as_positive_bytes().map_or(0, |n| n.len() * 8),
        None => {
            eprintln!("{path} is not an RSA key");
            std::process::exit(2);
        }
    };
    // Distinct messages the size of a signed commit, so nothing is cached,
    // signed by ssh-keygen (as `git commit -S` has them signed).
    let dir = std::env::temp_dir().join(format!("rsa-rate-{}", std::process::id()));
    let signed: Result<Vec<(Vec<u8>, SshSig)>, String> = (0..16u32)
        .map(|i| {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut m = vec![b'x'; 600];
            m.extend_from_slice(&i.to_le_bytes());
            let file = dir.join(format!("m{i}"));
            std::fs::write(&file, &m).map_err(|e| e.to_string())?;
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-Y", "sign", "-n", "git", "-f", &path])
                .arg(&file)
                .status()
                .map_err(|e| format!("ssh-keygen: {e}"))?;
            if !ok.success() {
                return Err(format!("ssh-keygen -Y sign failed with {path}"));
            }
            let pem = std::fs::read_to_string(file.with_file_name(format!("m{i}.sig")))
                .map_err(|e| e.to_string())?;
            let sig = SshSig::from_pem(pem.trim()).map_err(|e| e.to_string())?;
            Ok((m, sig))
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let signed = signed.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let public = key.public_key();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let check = |(m, sig): &(Vec<u8>, SshSig)| public.verify("git", m, sig).is_ok();
    let one = shared::rate(&signed, 1, secs, check);
    let all = shared::rate(&signed, cores, secs, check);
    println!(
        "RSA-{bits} SshSig verify, 1 core: {one:.0}/s ({:.0} us each)",
        1e6 / one
    );
    println!(
        "RSA-{bits} SshSig verify, {cores} cores: {all:.0}/s: 1,000 signatures take at least {:.3} s, 10,000 at least {:.2} s",
        1_000.0 / all,
        10_000.0 / all
    );
}
