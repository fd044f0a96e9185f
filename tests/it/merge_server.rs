//! Clean merges computed by one long-lived `git merge-tree --stdin` child
//! per hook run: a push of several merges where the later ones merge into
//! commits that exist only in the push's quarantine.

use crate::common::*;
use crate::util::*;

/// Two approved topics merged one after the other and pushed together: the
/// second merge's first parent (the first merge) is only in the
/// quarantine, so the hook's git child must see it.
#[test]
fn merge_server_sees_the_quarantine_across_merges_of_one_push() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let one = t.commit_on("alice", "one", "one.txt");
    let two = t.commit_on("dave", "two", "two.txt");
    for topic in [&one, &two] {
        for n in ["bob", "carol", "sam"] {
            t.approve(n, topic, &[]);
        }
    }
    let dir = t.on_main("mia");
    for topic in ["origin/one", "origin/two"] {
        let merged = t.cs("mia", &["merge", topic]);
        assert_eq!(merged.code, Some(0), "countersign merge {topic}\n{merged}");
    }
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    let first = t.parents("mia", &head)[0].clone();
    assert_eq!(t.parents("mia", &head), vec![first.clone(), two.clone()]);
    assert_eq!(t.parents("mia", &first), vec![t.base.clone(), one.clone()]);
    let out = t.push_from("mia", &["main"]);
    assert_accepted(&out);
    t.sb.assert_server_ref(MAIN, Some(&head));
}
