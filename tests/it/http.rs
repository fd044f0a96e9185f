//! Smart HTTP on a real server: Debian's lighttpd started by the test on
//! 127.0.0.1 (own config, stopped by its PID), `git http-backend` as CGI,
//! basic authentication; the pusher is the authenticated user
//! (`REMOTE_USER`).

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::util::*;

const LIGHTTPD: &str = "/usr/sbin/lighttpd";

struct Lighttpd {
    child: Child,
    port: u16,
}

impl Drop for Lighttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backend() -> Option<String> {
    let out = Command::new("git").arg("--exec-path").output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let p = Path::new(dir.trim()).join("git-http-backend");
    p.exists().then(|| p.display().to_string())
}

/// lighttpd serving every repository under `root` at `/git/`, with the
/// basic-auth users in `users` (`name:password` lines).
fn start(dir: &Path, root: &Path, users: &str) -> Option<Lighttpd> {
    if !Path::new(LIGHTTPD).exists() {
        eprintln!("SKIPPED: {LIGHTTPD} is missing (Debian package lighttpd; .ci/run installs it)");
        return None;
    }
    let Some(backend) = backend() else {
        eprintln!("SKIPPED: git-http-backend is missing");
        return None;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    fs::write(dir.join("users"), users).unwrap();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    let conf = format!(
        r#"server.document-root = "{d}"
server.port = {port}
server.bind = "127.0.0.1"
server.pid-file = "{d}/lighttpd.pid"
server.errorlog = "{d}/error.log"
server.modules = ("mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv", "mod_alias")
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.set-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "", "PATH" => "{path}")
}}
auth.backend = "plain"
auth.backend.plain.userfile = "{d}/users"
auth.require = ("/git" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
"#,
        d = dir.display(),
        root = root.display(),
    );
    let conf_path = dir.join("lighttpd.conf");
    fs::write(&conf_path, conf).unwrap();
    let child = Command::new(LIGHTTPD)
        .arg("-D")
        .arg("-f")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Lighttpd { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "lighttpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

fn push_http(sb: &Sandbox, user: &str, password: &str, port: u16) -> Out {
    let url = format!("http://{user}:{password}@127.0.0.1:{port}/git/server.git");
    run(sb.git(["push", &url, "HEAD:refs/heads/main"]), None)
}

/// Pushes over smart HTTP with basic auth: enforced, the rejection's
/// reasons reach the pusher, and the pusher recorded is the user the web
/// server authenticated.
#[test]
fn http_basic_auth_push_is_enforced_and_names_the_user() {
    let mut sb = Sandbox::new();
    let alice = sb.ssh_key("alice");
    sb.install(&standard_policy(&[simple_person(
        "alice",
        &["developer"],
        &alice,
    )]));
    let dir = sb.root().join("httpd");
    fs::create_dir_all(&dir).unwrap();
    let root = sb.root().to_path_buf();
    let Some(httpd) = start(&dir, &root, "alice:pw-a\nbob:pw-b\n") else {
        return;
    };
    let a = sb.commit_as(Some(&alice), "by alice");
    let out = push_http(&sb, "alice", "pw-a", httpd.port);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&a));
    let rec = last_push_record(&sb);
    assert_eq!(rec["pusher"]["name"], "alice", "{rec}");
    assert_eq!(rec["pusher"]["source"], "REMOTE_USER", "{rec}");
    // bob pushes a commit nobody in the policy signed: refused, with the reason.
    sb.commit_as(None, "unsigned, by bob");
    let out = push_http(&sb, "bob", "pw-b", httpd.port);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&a));
    let rec = last_push_record(&sb);
    assert_eq!(rec["pusher"]["name"], "bob", "{rec}");
    assert_eq!(rec["verdict"], "rejected", "{rec}");
    // A wrong password never reaches the hook.
    let before = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    let out = push_http(&sb, "bob", "wrong", httpd.port);
    assert!(!out.success, "{out}");
    let after = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    assert_eq!(before, after);
    // The ref-state log recorded alice's push.
    let subjects = sb.server_git_ok(["log", "--format=%s", "refs/countersign/log"]);
    assert!(
        subjects.contains("push by alice: refs/heads/main"),
        "{subjects}"
    );
    drop(httpd);
}
