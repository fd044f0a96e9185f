//! countersign: enforce separation of duties on self-hosted Git.
//!
//! The library is the verifier: it loads a policy, reads objects through
//! `git2` (inside the pre-receive quarantine when run as a hook), checks
//! signatures and rules, and returns a [`verify::Decision`] with every
//! [`finding::Finding`]. It never prints and never exits; the binary renders
//! decisions (see [`report`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod approval;
pub mod audit;
pub mod evidence;
pub mod finding;
pub mod glob;
pub mod hook;
pub mod keys;
pub mod limits;
pub mod merge;
#[cfg(test)]
mod mutate;
pub mod object;
pub mod policy;
pub mod report;
pub mod sanitize;
pub mod signature;
pub mod time;
pub mod verify;
pub mod workflow;
