//! The audit log on a full disk, through real pushes: a push whose record
//! does not fit is rejected and leaves the log exactly as it was (no torn
//! line), and once space is freed the next push is accepted and the chain
//! verifies. The log lives on a small tmpfs mounted for the test (root
//! only; skipped with a message otherwise).

use crate::util::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const MAIN: &str = "refs/heads/main";
/// tmpfs allocates whole pages: free space below a page is only the unused
/// end of a file's last page.
const PAGE: u64 = 4096;

/// A tmpfs mounted on a fresh directory; unmounted and removed on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` bytes, or None (with a message) when this
    /// process is not root. As root, a failed mount fails the test.
    fn mount(size: u64) -> Option<Tmpfs> {
        match effective_uid() {
            Some(0) => {}
            uid => {
                eprintln!(
                    "SKIPPED: mounting a tmpfs needs root (effective uid {uid:?}); the full-disk audit test did not run"
                );
                return None;
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("cs-tmpfs-{}-{}", std::process::id(), nanos));
        fs::create_dir(&dir).unwrap();
        let out = run(
            {
                let mut c = Command::new("mount");
                c.args(["-t", "tmpfs", "-o"])
                    .arg(format!("size={size},mode=0755"))
                    .arg("tmpfs")
                    .arg(&dir);
                c
            },
            None,
        );
        if !out.success {
            let _ = fs::remove_dir(&dir);
            panic!(
                "running as root, but `mount -t tmpfs` on {} failed\n{out}",
                dir.display()
            );
        }
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut c = Command::new("umount");
            if lazy {
                c.arg("-l");
            }
            c.arg(&self.dir);
            run(c, None).success
        };
        if !umount(false) && !umount(true) {
            eprintln!("warning: could not unmount {}", self.dir.display());
            return;
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The effective uid, from /proc/self/status (None where that is missing).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Write zeros to `path` until the file system is full. Returns the size.
fn fill(path: &Path) -> u64 {
    let mut f = fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    total
}

/// Bytes still writable at the end of `path` without a new page.
fn slack(path: &Path) -> u64 {
    let len = fs::metadata(path).unwrap().len();
    (PAGE - len % PAGE) % PAGE
}

/// Length of the last line of `path`, newline included.
fn last_record_len(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap();
    text.lines().last().map_or(0, |l| l.len() as u64 + 1)
}

#[test]
fn full_disk_rejects_the_push_without_tearing_the_log_then_recovers() {
    let Some(mnt) = Tmpfs::mount(256 * 1024) else {
        return;
    };
    let log = mnt.dir.join("audit.log");
    let filler = mnt.dir.join("filler");

    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    sb.server_git_ok(["config", "countersign.auditLog", log.to_str().unwrap()]);
    let base = sb.commit_as(Some(&dev), "initial");
    assert_accepted(&sb.push(&["main"]));
    sb.assert_server_ref(MAIN, Some(&base));
    assert!(log.exists(), "the hook did not write the log on the tmpfs");
    let main_record = last_record_len(&log);

    // The push below writes a record like the one that created main. For
    // a torn line to be possible, it must not fit in the free end of the
    // log's last page, yet some of it must: push other branches until the
    // log's length leaves a few hundred bytes there.
    let mut pads = 0;
    while !(64..=main_record.saturating_sub(128)).contains(&slack(&log)) {
        pads += 1;
        assert!(pads <= 60, "could not bring the log to a useful length");
        let name = format!("HEAD:refs/heads/pad/{}{pads}", "p".repeat(pads * 37 % 200));
        assert_accepted(&sb.push(&[name.as_str()]));
    }

    let filled = fill(&filler);
    let room = slack(&log);
    eprintln!(
        "log {} bytes, filler {filled} bytes, {room} bytes left in the log's last page, a record is about {main_record} bytes",
        fs::metadata(&log).unwrap().len()
    );
    let before = fs::read(&log).unwrap();

    // An otherwise valid push: its decision cannot be recorded.
    let next = sb.commit_as(Some(&dev), "while the disk is full");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "audit-log-unwritable");
    sb.assert_server_ref(MAIN, Some(&base));
    let after = fs::read(&log).unwrap();
    assert!(
        after == before,
        "the failed append changed the log: {} bytes before, {} after (torn tail: {:?})",
        before.len(),
        after.len(),
        String::from_utf8_lossy(&after[before.len().min(after.len())..])
    );

    // Space is freed: the same push is accepted, and the chain verifies.
    fs::remove_file(&filler).unwrap();
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&next));
    let v = sb.countersign(&sb.server, ["audit", "verify"]);
    assert!(v.success, "{v}");
    let records = 2 + pads;
    assert!(
        v.stdout.contains(&format!("verifies: {records} record(s)")),
        "expected {records} records\n{v}"
    );
    let v = sb.countersign(
        &sb.server,
        ["audit", "verify", "--log", log.to_str().unwrap()],
    );
    assert!(v.success, "{v}");
    drop(sb);
    drop(mnt);
}
