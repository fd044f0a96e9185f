//! Plain ssh on a real server: Debian's OpenSSH sshd started by the test on
//! 127.0.0.1 with its own host key and config (stopped by its PID), one
//! shared account for every pusher (`git@host` style), and the pusher told
//! apart by the key sshd authenticated (`ExposeAuthInfo yes` →
//! `SSH_USER_AUTH`), mapped to the person in the policy.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::util::*;

const SSHD: &str = "/usr/sbin/sshd";

/// sshd running in the foreground; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Start sshd for `authorized_keys` (lines as written), or `None` (with
/// the reason printed) when it cannot run here.
fn start_sshd(dir: &Path, authorized_keys: &str) -> Option<Sshd> {
    if !Path::new(SSHD).exists() {
        eprintln!(
            "SKIPPED: {SSHD} is missing (Debian package openssh-server; .ci/run installs it)"
        );
        return None;
    }
    // sshd needs root to switch to the account.
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        eprintln!("SKIPPED: sshd needs root here (uid {uid})");
        return None;
    }
    fs::create_dir_all("/run/sshd").unwrap();
    let host = dir.join("host_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host)
        .status()
        .unwrap();
    assert!(st.success());
    let ak = dir.join("authorized_keys");
    fs::write(&ak, authorized_keys).unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nExposeAuthInfo yes\nPermitUserEnvironment REMOTE_USER\nLogLevel ERROR\n",
            host.display(),
            dir.join("sshd.pid").display(),
            ak.display()
        ),
    )
    .unwrap();
    let child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let sshd = Sshd { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(sshd)
}

/// `git push` over ssh as the holder of `key`.
fn push_over_ssh(sb: &Sandbox, key: &Key, port: u16, refspec: &str) -> Out {
    let url = format!("ssh://root@127.0.0.1:{port}{}", sb.server.display());
    let mut c = sb.git(["push", &url, refspec]);
    c.env("GIT_SSH_COMMAND", ssh_command(key, port));
    run(c, None)
}

/// Two developers share one ssh account: each push is recorded under the
/// person whose key sshd authenticated, the hook enforces the policy over
/// ssh, and `SSH_USER_AUTH` outranks a `REMOTE_USER` from authorized_keys.
#[test]
fn sshd_shared_account_records_the_person_whose_key_logged_in() {
    let mut sb = Sandbox::new();
    let alice = sb.ssh_key("alice");
    let bob = sb.ssh_key("bob");
    let stranger = sb.ssh_key("stranger");
    sb.install(&standard_policy(&[
        simple_person("alice", &["developer"], &alice),
        simple_person("bob", &["developer"], &bob),
    ]));
    let dir: PathBuf = sb.root().join("sshd");
    fs::create_dir_all(&dir).unwrap();
    let keys = format!(
        "{}\nenvironment=\"REMOTE_USER=bob-env\" {}\n{}\n",
        public(&alice),
        public(&bob),
        public(&stranger)
    );
    let Some(sshd) = start_sshd(&dir, &keys) else {
        return;
    };
    let a = sb.commit_as(Some(&alice), "by alice");
    let out = push_over_ssh(&sb, &alice, sshd.port, "HEAD:refs/heads/main");
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&a));
    let rec = last_push_record(&sb);
    assert_eq!(rec["pusher"]["name"], "alice", "{rec}");
    assert_eq!(rec["pusher"]["source"], "SSH_USER_AUTH", "{rec}");

    let b = sb.commit_as(Some(&bob), "by bob");
    let out = push_over_ssh(&sb, &bob, sshd.port, "HEAD:refs/heads/main");
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&b));
    let rec = last_push_record(&sb);
    assert_eq!(rec["pusher"]["name"], "bob", "{rec}");
    let sources: Vec<&str> = rec["pusher"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["source"].as_str())
        .collect();
    assert!(sources.contains(&"REMOTE_USER"), "{rec}");

    // A key the server lets in but nobody in the policy holds: recorded as
    // a candidate, never chosen; the OS account is the pusher.
    let s = sb.commit_as(Some(&alice), "pushed by a stranger");
    let out = push_over_ssh(&sb, &stranger, sshd.port, "HEAD:refs/heads/main");
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&s));
    let rec = last_push_record(&sb);
    assert_eq!(rec["pusher"]["source"], "os-user", "{rec}");
    assert!(
        rec.to_string()
            .contains("no person in the policy holds this key"),
        "{rec}"
    );

    // The hook enforces over ssh too.
    sb.commit_as(None, "unsigned");
    let out = push_over_ssh(&sb, &alice, sshd.port, "HEAD:refs/heads/main");
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&s));
    // The ref-state log names the person too.
    let subjects = sb.server_git_ok(["log", "--format=%s", "refs/countersign/log"]);
    assert!(
        subjects.contains("push by alice: refs/heads/main")
            && subjects.contains("push by bob: refs/heads/main"),
        "{subjects}"
    );
    drop(sshd);
}
