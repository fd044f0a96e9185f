//! The end-to-end suite, one test binary (it links once): real `git push`
//! into a bare repository with countersign installed by install.sh as its
//! pre-receive hook, keys made with real ssh-keygen and gpg.
//!
//! Each rejection test asserts the specific `error[<code>]` and that the
//! server's refs did not move; each acceptance test asserts that the push
//! succeeded, that countersign said `countersign: accepted`, and that the
//! server's ref moved to the pushed value. Modules follow the features:
//! pushes, policy, tags, offline verify, install, approvals, audit (and a
//! full disk), admin commands, the evidence report, hardening.

mod common;
mod util;

mod admin;
mod approvals;
mod audit;
mod audit_disk;
mod cache;
mod cache_attack;
mod gitolite;
mod golden;
mod gov_attack;
mod gov_attack2;
mod gov_attack3;
mod governance;
mod grafts_attack;
mod graph_attack;
mod hardening;
mod hash_attack;
mod hosting;
mod http;
mod install;
mod install_cmd;
mod ledger;
mod ledger_attack;
mod merge_server;
mod operator_attack;
mod policy;
mod push;
mod report;
mod sshd;
mod streaming;
mod tags;
mod verify;
mod walk_attack;
