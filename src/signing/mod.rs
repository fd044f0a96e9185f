//! Signing: what a signature covers and whether it verifies.
//!
//! [`object`] splits a raw commit or tag into the signed payload and its
//! signature exactly as git does; [`signature`] verifies SSH and OpenPGP
//! signatures against the policy's keyring (never trusting names, only
//! keys); [`approval`] is the canonical, versioned statement an approver
//! signs and the trailer that carries it. Nothing here knows about rules,
//! refs or people's roles: that is the engine's work.

pub mod approval;
pub mod object;
pub mod signature;
