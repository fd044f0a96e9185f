//! Benchmark history generator: writes a large signed history fast.
//!
//! ```text
//! cargo run --release --example gen_history -- \
//!     --repo DIR --kind ssh|openpgp|merges --count N --key FILE \
//!     [--maintainer-key FILE --reviewer-key FILE --reviewer-key FILE] \
//!     [--repo-id ID] [--ref REF] [--base-time SECS] \
//!     [--parent REV --start I] [--tree-file NAME=FILE ...]
//! ```
//!
//! The commits are the bytes `git commit-tree -S` writes: the same headers
//! (author and committer `Bench <bench@example.com>`, time `base-time + i`,
//! `+0000`), the signature made over the commit without its `gpgsig` header
//! and inserted as git inserts it. SSH signatures are SshSig, namespace
//! `git`, SHA-512, as `ssh-keygen -Y sign` makes them (ed25519 is
//! deterministic, so a commit made by git with the same key, tree, parent,
//! message and dates has the same id; `bench/perf/run.py` checks one).
//! OpenPGP signatures are made by sequoia (gpg accepts them; `run.py`
//! checks a sample with `git verify-commit`).
//!
//! Objects are streamed as one pack into `git index-pack --stdin`, so even
//! a million commits need no loose objects and little memory.
//!
//! Kinds:
//! - `ssh`, `openpgp`: a linear history of N commits signed by `--key`.
//!   With `--parent REV --start I` the N commits are appended on top of
//!   REV (a ref or commit id of this repository) as commits I..I+N of the
//!   same history (times, messages and trees continue from I), and
//!   `--ref` is set to the new tip: on top of a history of I commits made
//!   by this generator with the same key, the result is byte for byte the
//!   history a single run with `--count I+N` makes (for deterministic
//!   signatures: SSH ed25519). `run.py` uses it for its incremental rows.
//!
//! `--tree-file NAME=FILE` (repeatable) adds a file NAME with FILE's
//! content to the root tree of every commit (the trees are shared, so it
//! costs nothing per commit); `run.py` puts sequoia-git's in-band policy
//! `openpgp-policy.toml` there so that `sq-git log` can check the same
//! OpenPGP history.
//! - `merges`: a signed root commit, then N changes, each a topic commit
//!   signed by `--key` (developer) and a `--no-ff` merge of it signed by
//!   `--maintainer-key`, carrying one `Countersign-Approval:` trailer per
//!   `--reviewer-key` (SSH approvals of the topic tip, namespace
//!   `countersign-approval`).
//!
//! A bench tool, not part of the product: it exits with a message on any
//! error.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use countersign::signing::approval::{self, Approval, Binding, Statement};
use git2::{ObjectType, Oid, Repository};
use sequoia_openpgp as openpgp;
use sha2::Digest as _;
use ssh_key::{HashAlg, LineEnding, PrivateKey};

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// Something that signs a commit payload the way git's configured signer
/// does, returning the armored signature.
enum Signer {
    Ssh(Box<PrivateKey>),
    /// Keys other than ed25519 are signed by `ssh-keygen -Y sign` itself,
    /// one process per signature (ssh-key 0.6.7 cannot sign with RSA: it
    /// rebuilds the private key from the wrong primes).
    SshKeygen(PathBuf),
    OpenPgp(Box<openpgp::crypto::KeyPair>),
}

impl Signer {
    fn load(path: &PathBuf, pgp: bool) -> Res<Signer> {
        if pgp {
            use openpgp::parse::Parse;
            let cert = openpgp::Cert::from_file(path).map_err(err("cannot read the TSK"))?;
            let policy = openpgp::policy::StandardPolicy::new();
            let key = cert
                .keys()
                .with_policy(&policy, None)
                .supported()
                .alive()
                .revoked(false)
                .for_signing()
                .secret()
                .next()
                .ok_or("the certificate has no usable secret signing key")?;
            let pair = key
                .key()
                .clone()
                .into_keypair()
                .map_err(err("cannot use the secret key"))?;
            Ok(Signer::OpenPgp(Box::new(pair)))
        } else {
            let key =
                PrivateKey::read_openssh_file(path).map_err(err("cannot read the SSH key"))?;
            if key.algorithm() == ssh_key::Algorithm::Ed25519 {
                Ok(Signer::Ssh(Box::new(key)))
            } else {
                Ok(Signer::SshKeygen(path.clone()))
            }
        }
    }

    fn sign(&self, payload: &[u8], namespace: &str, time: i64) -> Res<String> {
        match self {
            Signer::Ssh(key) => key
                .sign(namespace, HashAlg::Sha512, payload)
                .and_then(|s| s.to_pem(LineEnding::LF))
                .map_err(err("SSH signing failed")),
            Signer::SshKeygen(path) => {
                let mut child = Command::new("ssh-keygen")
                    .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
                    .arg(path)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .map_err(err("cannot run ssh-keygen"))?;
                child
                    .stdin
                    .take()
                    .ok_or("no stdin")?
                    .write_all(payload)
                    .map_err(err("ssh-keygen"))?;
                let out = child.wait_with_output().map_err(err("ssh-keygen"))?;
                if !out.status.success() {
                    return Err(format!("ssh-keygen -Y sign failed: {}", out.status));
                }
                String::from_utf8(out.stdout).map_err(err("ssh-keygen output"))
            }
            Signer::OpenPgp(pair) => {
                use openpgp::armor;
                use openpgp::serialize::stream::{Armorer, Message, Signer as PgpSigner};
                let mut sink = Vec::new();
                {
                    let m = Message::new(&mut sink);
                    let m = Armorer::new(m)
                        .kind(armor::Kind::Signature)
                        .build()
                        .map_err(err("armor"))?;
                    let when = std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(u64::try_from(time).unwrap_or(0));
                    let mut s = PgpSigner::new(m, (**pair).clone())
                        .map_err(err("signer"))?
                        .detached()
                        .creation_time(when)
                        .build()
                        .map_err(err("signer"))?;
                    s.write_all(payload).map_err(err("sign"))?;
                    s.finalize().map_err(err("sign"))?;
                }
                String::from_utf8(sink).map_err(err("armor is not UTF-8"))
            }
        }
    }

    /// The binary signature of an approval statement (SSH only).
    fn approval_blob(&self, statement: &[u8]) -> Res<Vec<u8>> {
        match self {
            // As `countersign approve` does: the armor ssh-keygen prints,
            // dearmored.
            Signer::Ssh(key) => key
                .sign(approval::NAMESPACE, HashAlg::Sha512, statement)
                .and_then(|s| s.to_pem(LineEnding::LF))
                .map_err(err("SSH signing failed"))
                .and_then(|pem| approval::dearmor(pem.as_bytes())),
            _ => Err("approvals are generated with SSH ed25519 keys only".into()),
        }
    }
}

/// Streams objects as a version-2 pack into `git index-pack --stdin`.
struct PackOut {
    child: std::process::Child,
    out: BufWriter<std::process::ChildStdin>,
    hash: sha1collisiondetection::Sha1CD,
    declared: u32,
    written: u32,
}

impl PackOut {
    fn start(git_dir: &std::path::Path, objects: u32) -> Res<PackOut> {
        let mut child = Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["index-pack", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(err("cannot run git index-pack"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut p = PackOut {
            child,
            out: BufWriter::with_capacity(1 << 20, stdin),
            hash: sha1collisiondetection::Sha1CD::default(),
            declared: objects,
            written: 0,
        };
        let mut header = b"PACK".to_vec();
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&objects.to_be_bytes());
        p.raw(&header)?;
        Ok(p)
    }

    fn raw(&mut self, bytes: &[u8]) -> Res<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes).map_err(err("git index-pack"))
    }

    fn object(&mut self, kind: ObjectType, data: &[u8]) -> Res<Oid> {
        let id = Oid::hash_object(kind, data).map_err(err("hash"))?;
        let code: u8 = match kind {
            ObjectType::Commit => 1,
            ObjectType::Tree => 2,
            ObjectType::Blob => 3,
            _ => return Err("unsupported object kind".into()),
        };
        let mut size = data.len();
        let mut head = vec![(code << 4) | (size & 0x0f) as u8];
        size >>= 4;
        while size > 0 {
            if let Some(last) = head.last_mut() {
                *last |= 0x80;
            }
            head.push((size & 0x7f) as u8);
            size >>= 7;
        }
        self.raw(&head)?;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(data).map_err(err("deflate"))?;
        let packed = z.finish().map_err(err("deflate"))?;
        self.raw(&packed)?;
        self.written += 1;
        Ok(id)
    }

    fn finish(mut self) -> Res<()> {
        if self.written != self.declared {
            return Err(format!(
                "internal: declared {} objects, wrote {}",
                self.declared, self.written
            ));
        }
        let sum = self.hash.clone().finalize();
        self.out.write_all(&sum).map_err(err("git index-pack"))?;
        self.out.flush().map_err(err("git index-pack"))?;
        drop(self.out);
        let status = self.child.wait().map_err(err("git index-pack"))?;
        if !status.success() {
            return Err(format!("git index-pack failed: {status}"));
        }
        Ok(())
    }
}

const IDENT: &str = "Bench <bench@example.com>";

/// The commit bytes git writes, signed by `signer` when given.
fn commit_bytes(
    tree: Oid,
    parents: &[Oid],
    time: i64,
    message: &str,
    signer: &Signer,
) -> Res<Vec<u8>> {
    let mut head = format!("tree {tree}\n");
    for p in parents {
        head.push_str(&format!("parent {p}\n"));
    }
    head.push_str(&format!(
        "author {IDENT} {time} +0000\ncommitter {IDENT} {time} +0000\n"
    ));
    let payload = format!("{head}\n{message}");
    let sig = signer.sign(payload.as_bytes(), "git", time)?;
    let mut out = head;
    for (i, line) in sig.trim_end_matches('\n').split('\n').enumerate() {
        out.push_str(if i == 0 { "gpgsig " } else { " " });
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(message);
    Ok(out.into_bytes())
}

/// Files added to every root tree (`--tree-file`): name and content.
type Extra = [(String, Vec<u8>)];

/// A tree holding one file `f` with `content`, plus the `extra` files.
/// The extra blobs are written again for every tree (git's index-pack
/// accepts duplicate objects); only the 64 trees of a linear history and
/// the per-change trees of `merges` pay for it, never a commit.
fn one_file_tree(pack: &mut PackOut, content: &str, extra: &Extra) -> Res<Oid> {
    let mut entries = vec![(
        "f".to_string(),
        pack.object(ObjectType::Blob, content.as_bytes())?,
    )];
    for (name, data) in extra {
        entries.push((name.clone(), pack.object(ObjectType::Blob, data)?));
    }
    // Git orders the entries of a tree by name, bytewise (files only).
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut tree = Vec::new();
    for (name, blob) in entries {
        tree.extend_from_slice(b"100644 ");
        tree.extend_from_slice(name.as_bytes());
        tree.push(0);
        tree.extend_from_slice(blob.as_bytes());
    }
    pack.object(ObjectType::Tree, &tree)
}

/// Objects one `one_file_tree` writes.
fn tree_objects(extra: &Extra) -> u32 {
    2 + u32::try_from(extra.len()).unwrap_or(u32::MAX)
}

struct Args {
    repo: PathBuf,
    kind: String,
    count: u32,
    key: PathBuf,
    maintainer: Option<PathBuf>,
    reviewers: Vec<PathBuf>,
    repo_id: String,
    refname: String,
    base_time: i64,
    parent: Option<String>,
    start: u32,
    tree_files: Vec<(String, Vec<u8>)>,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        repo: PathBuf::new(),
        kind: "ssh".into(),
        count: 1000,
        key: PathBuf::new(),
        maintainer: None,
        reviewers: Vec::new(),
        repo_id: "bench/repo".into(),
        refname: "refs/heads/main".into(),
        base_time: 1_700_000_000,
        parent: None,
        start: 0,
        tree_files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--repo" => a.repo = value()?.into(),
            "--kind" => a.kind = value()?,
            "--count" => a.count = value()?.parse().map_err(err("--count"))?,
            "--key" => a.key = value()?.into(),
            "--maintainer-key" => a.maintainer = Some(value()?.into()),
            "--reviewer-key" => a.reviewers.push(value()?.into()),
            "--repo-id" => a.repo_id = value()?,
            "--ref" => a.refname = value()?,
            "--base-time" => a.base_time = value()?.parse().map_err(err("--base-time"))?,
            "--parent" => a.parent = Some(value()?),
            "--start" => a.start = value()?.parse().map_err(err("--start"))?,
            "--tree-file" => {
                let v = value()?;
                let (name, path) = v.split_once('=').ok_or("--tree-file needs NAME=FILE")?;
                if name.is_empty() || name.contains('/') || name == "f" {
                    return Err(format!("--tree-file: bad name {name:?}"));
                }
                let data = std::fs::read(path).map_err(err("--tree-file"))?;
                a.tree_files.push((name.to_string(), data));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.repo.as_os_str().is_empty() || a.key.as_os_str().is_empty() {
        return Err("--repo and --key are required".into());
    }
    if a.parent.is_some() != (a.start > 0) {
        return Err("--parent and --start (> 0) go together".into());
    }
    if a.parent.is_some() && a.kind == "merges" {
        return Err("--parent is for the linear kinds (ssh, openpgp)".into());
    }
    Ok(a)
}

fn run() -> Res<()> {
    let a = parse_args()?;
    let repo = Repository::open(&a.repo).map_err(err("cannot open the repository"))?;
    let git_dir = repo.path().to_path_buf();
    let dev = Signer::load(&a.key, a.kind == "openpgp")?;
    let n = a.count;
    let tip = match a.kind.as_str() {
        "ssh" | "openpgp" => {
            // 64 distinct one-file trees, used in turn.
            let trees = 64u32;
            let mut pack = PackOut::start(&git_dir, tree_objects(&a.tree_files) * trees + n)?;
            let tree_ids = (0..trees)
                .map(|j| one_file_tree(&mut pack, &format!("change {j}\n"), &a.tree_files))
                .collect::<Res<Vec<Oid>>>()?;
            let mut parent: Option<Oid> = match &a.parent {
                Some(rev) => Some(
                    repo.revparse_single(rev)
                        .and_then(|o| o.peel_to_commit())
                        .map_err(err("--parent"))?
                        .id(),
                ),
                None => None,
            };
            let end = a
                .start
                .checked_add(n)
                .ok_or("--start + --count overflows")?;
            for i in a.start..end {
                let tree = tree_ids[(i % trees) as usize];
                let parents: Vec<Oid> = parent.into_iter().collect();
                let time = a.base_time + i64::from(i);
                let bytes = commit_bytes(tree, &parents, time, &format!("commit {i}\n"), &dev)?;
                parent = Some(pack.object(ObjectType::Commit, &bytes)?);
            }
            pack.finish()?;
            parent
        }
        "merges" => {
            let maint = Signer::load(a.maintainer.as_ref().ok_or("--maintainer-key")?, false)?;
            let reviewers = a
                .reviewers
                .iter()
                .map(|p| Signer::load(p, false))
                .collect::<Res<Vec<_>>>()?;
            // Per change: a tree (with its blobs), topic commit, merge;
            // plus the root's tree and commit.
            let per_tree = tree_objects(&a.tree_files);
            let mut pack = PackOut::start(&git_dir, per_tree + 1 + (per_tree + 2) * n)?;
            let root_tree = one_file_tree(&mut pack, "root\n", &a.tree_files)?;
            let root = pack.object(
                ObjectType::Commit,
                &commit_bytes(root_tree, &[], a.base_time, "root\n", &dev)?,
            )?;
            let mut main = root;
            for i in 0..n {
                let t = a.base_time + 2 * i64::from(i) + 1;
                let tree = one_file_tree(&mut pack, &format!("change {i}\n"), &a.tree_files)?;
                let topic = pack.object(
                    ObjectType::Commit,
                    &commit_bytes(tree, &[main], t, &format!("change {i}\n"), &dev)?,
                )?;
                let mut trailers = Vec::new();
                for (k, r) in reviewers.iter().enumerate() {
                    let statement = Statement {
                        repository: a.repo_id.clone(),
                        refname: a.refname.clone(),
                        binding: Binding::Topic {
                            commit: topic,
                            tree,
                        },
                        issued_at: t,
                    };
                    let signature = r.approval_blob(&statement.canonical())?;
                    let ap = Approval {
                        by: format!("reviewer{}@example.com", k + 1),
                        statement,
                        signature,
                    };
                    trailers.push(ap.trailer());
                }
                let message =
                    countersign::workflow::merge_message(&format!("Merge topic {i}"), &trailers);
                main = pack.object(
                    ObjectType::Commit,
                    &commit_bytes(tree, &[main, topic], t + 1, &message, &maint)?,
                )?;
            }
            pack.finish()?;
            println!("root {root}");
            Some(main)
        }
        other => return Err(format!("unknown --kind {other} (ssh, openpgp, merges)")),
    };
    let tip = tip.ok_or("no commits written")?;
    repo.reference(&a.refname, tip, true, "gen_history")
        .map_err(err("cannot update the ref"))?;
    println!("tip {tip}");
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gen_history: {e}");
        std::process::exit(1);
    }
}
