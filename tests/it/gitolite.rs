//! Gitolite 3 on a real server: Debian's gitolite3 set up for a user made
//! by the test, Debian's sshd on 127.0.0.1 in front of it (gitolite's own
//! `authorized_keys`), countersign installed host-wide with `countersign
//! install --root ~/repositories --layout gitolite`, pushes
//! over ssh. The pusher is gitolite's user (`GL_USER`), and gitolite-admin
//! is not covered, so the admin is never locked out.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{public, ssh_command};
use crate::util::*;

struct Guard {
    sshd: Option<Child>,
    user: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.sshd {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("userdel").arg(&self.user).status();
    }
}

fn as_user(user: &str, home: &Path, args: &[&str]) -> Out {
    let mut c = Command::new("runuser");
    c.args(["-u", user, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .args(["PATH=/usr/bin:/bin"])
        .args(args);
    run(c, None)
}

#[test]
fn gitolite_push_is_enforced_names_gl_user_and_spares_gitolite_admin() {
    let missing: Vec<&str> = [
        "/usr/bin/gitolite",
        "/usr/sbin/sshd",
        "/usr/sbin/useradd",
        "/usr/sbin/runuser",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    if !missing.is_empty() {
        eprintln!("SKIPPED: {missing:?} missing (Debian packages gitolite3, openssh-server; .ci/run installs them)");
        return;
    }
    let mut sb = Sandbox::new();
    let admin = sb.ssh_key("admin");
    let alice = sb.ssh_key("alice");
    let user = format!("csgl{}", std::process::id());
    let home: PathBuf = sb.root().join("gl-home");
    let st = Command::new("useradd")
        // `-p '*'`: no password, but not a locked account (sshd refuses those).
        .args(["-M", "-p", "*", "-s", "/bin/sh", "-d"])
        .arg(&home)
        .arg(&user)
        .status()
        .unwrap();
    if !st.success() {
        eprintln!("SKIPPED: cannot create a user here");
        return;
    }
    let mut guard = Guard {
        sshd: None,
        user: user.clone(),
    };
    fs::create_dir_all(&home).unwrap();
    // The sandbox root must be traversable by the gitolite user.
    for d in [sb.root(), home.as_path()] {
        run(
            {
                let mut c = Command::new("chmod");
                c.arg("755").arg(d);
                c
            },
            None,
        );
    }
    run(
        {
            let mut c = Command::new("chown");
            c.arg(format!("{user}:")).arg(&home);
            c
        },
        None,
    );
    let admin_pub = home.join("admin.pub");
    fs::write(&admin_pub, format!("{}\n", public(&admin))).unwrap();
    let out = as_user(
        &user,
        &home,
        &["gitolite", "setup", "-pk", admin_pub.to_str().unwrap()],
    );
    assert!(out.success, "gitolite setup\n{out}");

    // sshd in front of gitolite's authorized_keys.
    fs::create_dir_all("/run/sshd").unwrap();
    let dir = sb.root().join("sshd");
    fs::create_dir_all(&dir).unwrap();
    let host = dir.join("host");
    run(
        {
            let mut c = Command::new("ssh-keygen");
            c.args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host);
            c
        },
        None,
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dir.join("sshd_config");
    fs::write(
        &conf,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile %h/.ssh/authorized_keys\nStrictModes no\nAllowUsers {user}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n",
            host.display(),
            dir.join("pid").display()
        ),
    )
    .unwrap();
    guard.sshd = Some(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = |repo: &str| format!("ssh://{user}@127.0.0.1:{port}/{repo}");

    // The admin adds alice and a repository through gitolite-admin.
    let adm = sb.root().join("gl-admin");
    let mut c = sb.git_in(
        sb.root(),
        ["clone", "-q", &url("gitolite-admin"), adm.to_str().unwrap()],
    );
    c.env("GIT_SSH_COMMAND", ssh_command(&admin, port));
    let out = run(c, None);
    assert!(out.success, "clone gitolite-admin\n{out}");
    fs::write(
        adm.join("keydir/alice.pub"),
        format!("{}\n", public(&alice)),
    )
    .unwrap();
    let mut conf_text = fs::read_to_string(adm.join("conf/gitolite.conf")).unwrap();
    conf_text.push_str("\nrepo payments\n    RW+ = alice\n");
    fs::write(adm.join("conf/gitolite.conf"), conf_text).unwrap();
    let admin_push = |msg: &str| {
        sb.git_ok_in(&adm, ["add", "-A"]);
        sb.git_ok_in(
            &adm,
            [
                "-c",
                "user.name=admin",
                "-c",
                "user.email=a@x",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                msg,
            ],
        );
        let mut c = sb.git_in(&adm, ["push", "-q", "origin", "HEAD"]);
        c.env("GIT_SSH_COMMAND", ssh_command(&admin, port));
        run(c, None)
    };
    let out = admin_push("add alice and payments");
    assert!(out.success, "{out}");

    // countersign on payments only (never on gitolite-admin).
    let repo = home.join("repositories/payments.git");
    assert!(repo.is_dir(), "gitolite made the repository");
    let policy = sb.root().join("gl-policy.toml");
    fs::write(
        &policy,
        standard_policy(&[simple_person("alice", &["developer"], &alice)]),
    )
    .unwrap();
    // Host-wide: every repository under gitolite's root, gitolite-admin skipped.
    let mut c = sb.cmd(BIN);
    c.arg("install")
        .arg("--root")
        .arg(home.join("repositories"))
        .args(["--layout", "gitolite", "--policy"])
        .arg(&policy);
    let out = run(c, None);
    assert!(
        out.all().contains("gitolite-admin"),
        "says it skipped gitolite-admin\n{out}"
    );
    assert!(
        !home
            .join("repositories/gitolite-admin.git/hooks/countersign")
            .exists(),
        "gitolite-admin is not covered"
    );
    if !out.success {
        let dbg = as_user(
            &user,
            &home,
            &[
                "git",
                "--git-dir",
                repo.to_str().unwrap(),
                "config",
                "--list",
                "--show-origin",
            ],
        );
        let dbg2 = as_user(
            &user,
            &home,
            &[
                "env",
                &format!("GIT_DIR={}", repo.display()),
                BIN,
                "policy",
                "check",
            ],
        );
        panic!("install\n{out}\n{dbg}\n{dbg2}");
    }
    let owner = fs::read_to_string(repo.join("countersign/server-key.pub"));
    assert!(owner.is_ok(), "log init ran as the gitolite user");

    // alice pushes over ssh through gitolite.
    let work = sb.root().join("gl-work");
    fs::create_dir_all(&work).unwrap();
    sb.git_ok_in(&work, ["init", "-q", "-b", "main"]);
    sb.git_ok_in(&work, ["config", "user.name", "Alice"]);
    sb.git_ok_in(&work, ["config", "user.email", "alice@example.com"]);
    fs::write(work.join("f"), "1").unwrap();
    sb.git_ok_in(&work, ["add", "f"]);
    let mut args: Vec<String> = alice.sign_config();
    args.extend(["commit", "-q", "-S", "-m", "signed"].map(String::from));
    sb.git_ok_in(&work, &args);
    let push = |refspec: &str| {
        let mut c = sb.git_in(&work, ["push", &url("payments"), refspec]);
        c.env("GIT_SSH_COMMAND", ssh_command(&alice, port));
        run(c, None)
    };
    let out = push("HEAD:refs/heads/main");
    assert_accepted(&out);
    let log = fs::read_to_string(repo.join("countersign/audit.log")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(rec["pusher"]["name"], "alice", "{rec}");
    assert_eq!(rec["pusher"]["source"], "GL_USER", "{rec}");
    fs::write(work.join("f"), "2").unwrap();
    sb.git_ok_in(&work, ["commit", "-q", "-am", "unsigned"]);
    let out = push("HEAD:refs/heads/main");
    assert_rejected_with(&out, "unsigned-commit");

    // install.sh run as root checks core.hooksPath as the gitolite user
    // sees it (their global config), not as root (issue 12, item 3).
    let gitconfig = home.join(".gitconfig");
    fs::write(&gitconfig, "[core]\n\thooksPath = /nowhere\n").unwrap();
    run(
        {
            let mut c = Command::new("chown");
            c.arg(format!("{user}:")).arg(&gitconfig);
            c
        },
        None,
    );
    let mut c = sb.cmd("bash");
    c.arg(source_dir().join("install.sh"))
        .arg(&repo)
        .arg("--binary")
        .arg(BIN);
    let out = run(c, None);
    assert!(
        !out.success && out.stderr.contains("core.hooksPath"),
        "{out}"
    );
    fs::remove_file(&gitconfig).unwrap();

    // gitolite-admin still takes the admin's pushes.
    let out = admin_push("still the admin");
    assert!(out.success, "gitolite-admin must not be locked out\n{out}");
    drop(guard);
}
