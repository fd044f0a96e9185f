//! countersign: enforce separation of duties on self-hosted Git.
//!
//! The path of a push, top-down through the folders:
//!
//! - [`hook`]: read git's `<old> <new> <ref>` lines, open the repository
//!   (inside the pre-receive quarantine), find and load the policy (the one
//!   locator every command uses), decide, record;
//! - [`policy`]: who holds which keys and roles, which rules protect which
//!   refs, and the [`policy::limits`] that bound every push;
//! - [`signing`]: split objects into payload and signature as git does,
//!   verify SSH and OpenPGP signatures, the approval statement;
//! - [`engine`]: the [`Verifier`]: every rule on every update, every commit
//!   newly reachable, every landing merge, into a [`Decision`];
//! - [`finding`]: the reasons a push is rejected, each with a stable code;
//! - [`audit`] and [`report`]: the hash-chained record of every decision,
//!   and the renderings people read (push text, JSON, evidence reports).
//!
//! Beside the push path: [`admin`] (policy edits as a library) and
//! [`workflow`] (approve, merge, status). The library never prints and
//! never exits; the `countersign` binary (`src/cli/`) renders what it
//! returns. Underneath all: [`repository`], the one place a repository is
//! opened (without libgit2's commit graph).

#![forbid(unsafe_code)]
#![warn(clippy::missing_errors_doc)]

pub mod admin;
pub mod audit;
pub mod doctor;
pub mod engine;
pub mod finding;
pub mod governance;
pub mod hook;
pub mod ledger;
#[cfg(test)]
mod mutate;
pub mod owner;
pub mod policy;
pub mod report;
pub mod repository;
pub mod sanitize;
pub mod signing;
pub mod time;
pub mod workflow;

pub use engine::{Decision, RefUpdate, Verifier};
pub use finding::{Code, Finding};
pub use policy::limits::Limits;
pub use policy::Policy;
