//! `approval::Approval::parse`, `approval::trailers`, `approval::dearmor`
//! and `approval::armor` on arbitrary bytes.
//!
//! Never panics, and:
//! - parse → `trailer()` → parse gives the same approval; the trailer is
//!   one line that starts `Countersign-Approval: `, and `trailers()` finds
//!   exactly its value again when it ends a commit message;
//! - the canonical statement of a parsed approval starts with the v1
//!   header and is exactly 7 lines;
//! - every value `trailers()` returns is trimmed and has no line break;
//! - `dearmor(armor(b)) == b` for the input bytes, and for anything that
//!   `dearmor` accepts: `dearmor(armor(dearmor(x))) == dearmor(x)`.
#![no_main]

use countersign::signing::approval::{armor, dearmor, trailers, Approval, HEADER, TRAILER};
use libfuzzer_sys::fuzz_target;

fn round_trip(value: &str) {
    let Ok(a) = Approval::parse(value) else { return };
    let line = a.trailer();
    assert!(!line.contains('\n') && !line.contains('\r'), "trailer spans lines: {line:?}");
    let prefix = format!("{TRAILER}: ");
    let v = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("trailer does not start with {prefix:?}: {line:?}"));
    let b = Approval::parse(v).unwrap_or_else(|e| panic!("own trailer refused: {e}\n{line}"));
    assert_eq!(a, b, "parse(trailer()) differs");
    assert_eq!(a.statement.canonical(), b.statement.canonical());

    // Carried in a message, the trailer is found again as it was written.
    let message = format!("Merge topic\n\n{line}\n");
    assert_eq!(trailers(message.as_bytes()), vec![v.to_string()]);

    let canonical = a.statement.canonical();
    let text = String::from_utf8(canonical).expect("statement is UTF-8");
    assert!(text.starts_with(&format!("{HEADER}\n")));
    assert_eq!(text.matches('\n').count(), 7, "statement is not 7 lines: {text:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    round_trip(&text);
    round_trip(text.strip_prefix("Countersign-Approval:").unwrap_or(&text));

    for v in trailers(data) {
        assert_eq!(v.trim(), v, "trailer value not trimmed");
        assert!(!v.contains('\n'), "trailer value spans lines: {v:?}");
        round_trip(&v);
    }

    assert_eq!(dearmor(&armor(data)).as_deref(), Ok(data), "armor round trip");
    if let Ok(bin) = dearmor(data) {
        assert_eq!(dearmor(&armor(&bin)), Ok(bin), "dearmor/armor round trip");
    }
});
