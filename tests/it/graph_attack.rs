//! Was a hole (left open in the attack review of the streaming judge,
//! closed the round after): libgit2 takes a commit's parents from the
//! commit-graph file of the object directory without reading the commit,
//! and git takes parents and root trees of the commits it is not named
//! from any commit graph, the alternates' included. Nothing checks that
//! file against the objects, and `git gc` writes one by default. Whoever
//! can write the repository's files (the README's adversary) could forge
//! one:
//!
//! - forged parents hid an unsigned commit from `verify A..B` (libgit2's
//!   walk checked one commit and passed);
//! - a forged root tree for a merge base makes git's "clean merge" one
//!   that takes a reviewed change back (git's one-process-per-merge path;
//!   the hook's `--stdin` child is named the base).
//!
//! Now every repository countersign opens drops its commit graph, and git
//! runs with `core.commitGraph=false`.

use sha2::Digest as _;
use std::fs;
use std::path::Path;

use crate::common::*;
use crate::util::*;

/// A commit-graph file (one, not a chain) as git writes it, to forge.
struct Graph {
    bytes: Vec<u8>,
    hash: usize,
    oidl: usize,
    cdat: usize,
    commits: usize,
}

impl Graph {
    fn read(path: &Path) -> Graph {
        let bytes = fs::read(path).unwrap();
        assert_eq!(&bytes[..4], b"CGPH");
        assert_eq!(bytes[5], 1, "a SHA-1 graph");
        let hash = 20;
        let chunks = bytes[6] as usize;
        let (mut oidl, mut cdat) = (0, 0);
        for i in 0..chunks {
            let at = 8 + 12 * i;
            let offset = u64::from_be_bytes(bytes[at + 4..at + 12].try_into().unwrap()) as usize;
            match &bytes[at..at + 4] {
                b"OIDL" => oidl = offset,
                b"CDAT" => cdat = offset,
                _ => {}
            }
        }
        assert!(oidl > 0 && cdat > oidl);
        let commits = (cdat - oidl) / hash;
        Graph {
            bytes,
            hash,
            oidl,
            cdat,
            commits,
        }
    }

    /// The position of `id` in the graph.
    fn index(&self, id: &str) -> usize {
        (0..self.commits)
            .find(|i| {
                let at = self.oidl + i * self.hash;
                hex(&self.bytes[at..at + self.hash]) == id
            })
            .unwrap_or_else(|| panic!("{id} is not in the commit graph"))
    }

    /// Where `id`'s commit data starts: root tree, first parent, second
    /// parent, generation and time.
    fn data(&self, id: &str) -> usize {
        self.cdat + self.index(id) * (self.hash + 16)
    }

    fn set_tree(&mut self, id: &str, tree: &str) {
        let at = self.data(id);
        self.bytes[at..at + self.hash].copy_from_slice(&unhex(tree));
    }

    fn set_first_parent(&mut self, id: &str, parent: &str) {
        let at = self.data(id) + self.hash;
        let p = u32::try_from(self.index(parent)).unwrap();
        self.bytes[at..at + 4].copy_from_slice(&p.to_be_bytes());
    }

    /// Write it back with its checksum, as git would.
    fn write(mut self, path: &Path) {
        let end = self.bytes.len() - self.hash;
        let sum = sha1collisiondetection::Sha1CD::digest(&self.bytes[..end]);
        self.bytes[end..].copy_from_slice(&sum);
        fs::write(path, &self.bytes).unwrap();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Write a commit graph of everything reachable in `git_dir` with git,
/// and return its path. Generation numbers of version 1: libgit2 1.9
/// ignores a graph with the chunks of version 2 (git's default), so an
/// attacker writes this kind.
fn write_graph(sb: &Sandbox, git_dir: &Path) -> std::path::PathBuf {
    let mut c = sb.cmd("git");
    c.arg("--git-dir").arg(git_dir).args([
        "-c",
        "commitGraph.generationVersion=1",
        "commit-graph",
        "write",
        "--reachable",
        "--no-progress",
    ]);
    run_ok(c, None);
    let path = git_dir.join("objects").join("info").join("commit-graph");
    assert!(path.is_file(), "git wrote no commit graph");
    path
}

/// Refused: an evil merge that takes back topic-a's reviewed change while
/// merging topic-b, which is what git's merge gives when the server's
/// commit graph says the merge base has topic-a's tree (git reads from
/// the graph what it is not named: the check below shows git by hand
/// believes it). The hook names the base to its `--stdin` git child and
/// runs git with `core.commitGraph=false`; the one-process-per-merge path
/// (git older than 2.42), where git finds the base itself, is checked in
/// `engine::merge`'s unit test `a_forged_tree_in_a_commit_graph_is_not_read`.
/// This is the whole attack through the hook, as the adversary would try it.
#[test]
fn a_forged_tree_in_the_servers_commit_graph_is_not_believed() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "file.txt");
    let b = t.commit_on("alice", "topic-b", "b.txt");
    let first = t.hand_merge("mia", &["origin/topic-a"], &t.usual_approvals(&a));
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&first));

    // On the server: a commit graph that gives the merge base of main and
    // topic-b (the old main) topic-a's tree.
    let tree_a = t.sb.server_git_ok(["rev-parse", &format!("{a}^{{tree}}")]);
    let path = write_graph(&t.sb, &t.sb.server);
    let mut graph = Graph::read(&path);
    graph.set_tree(&t.base, &tree_a);
    graph.write(&path);
    // git believes it: its merge of main and topic-b now lacks topic-a's
    // change (the tree of main's parent, plus b.txt).
    let merged =
        t.sb.server_git_ok(["merge-tree", "--write-tree", first.as_str(), b.as_str()]);
    let tree_b = t.sb.server_git_ok(["rev-parse", &format!("{b}^{{tree}}")]);
    assert_eq!(merged, tree_b, "the forged graph is not read");

    // mia merges topic-b taking topic-a's change back, signed, with
    // topic-b's approvals.
    let trailers = t.usual_approvals(&b);
    let dir = t.on_main("mia");
    let out = t.sb.git_out_in(
        &dir,
        None,
        ["merge", "-q", "--no-ff", "--no-commit", "origin/topic-b"],
    );
    assert!(out.success, "{out}");
    t.sb.git_ok_in(&dir, ["checkout", t.base.as_str(), "--", "file.txt"]);
    let m = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic-b into main", &trailers),
        &[],
    );
    assert_eq!(t.parents("mia", &m), vec![first.clone(), b]);
    assert_eq!(t.sb.git_ok_in(&dir, ["rev-parse", "HEAD^{tree}"]), tree_b);
    let out = t.push_from("mia", &["main"]);
    assert_rejected_with(&out, "evil-merge");
    t.sb.assert_server_ref(MAIN, Some(&first));
}

/// Found: an unsigned commit under a signed one, which a commit graph in
/// the clone hid from `verify base..top` by giving the top the base as
/// its parent (libgit2's walk checked one commit and passed).
#[test]
fn forged_parents_in_a_commit_graph_hide_nothing_from_verify() {
    let (mut sb, dev, base) = with_dev(|_| Vec::new());
    let unsigned = sb.commit_as(None, "unsigned");
    let top = sb.commit_as(Some(&dev), "top");
    let git_dir = sb.work.join(".git");
    let path = write_graph(&sb, &git_dir);
    let mut graph = Graph::read(&path);
    graph.set_first_parent(&top, &base);
    graph.write(&path);

    let policy = sb.policy.to_str().unwrap().to_string();
    let work = sb.work.clone();
    let range = format!("{base}..{top}");
    let out = sb.countersign(
        &work,
        [
            "verify",
            range.as_str(),
            "--ref",
            "refs/heads/main",
            "--policy",
            policy.as_str(),
            "--no-cache",
        ],
    );
    assert!(!out.success, "{out}");
    assert!(out.all().contains("unsigned-commit"), "{out}");
    assert!(out.all().contains(&unsigned[..12]), "{out}");
}
