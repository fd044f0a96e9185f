//! Escape attacker-written text before it reaches a terminal.
//!
//! Commit subjects, ref names, key comments and tag messages come from the
//! pusher. Control characters (including ESC, CR and BEL) and Unicode bidi
//! overrides could rewrite what an admin sees; they are shown escaped.

/// Escape control, bidi and other invisible formatting characters as
/// `\u{..}` (and `\n`, `\r`, `\t`), leaving printable text alone.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if is_dangerous(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Decode bytes as UTF-8 (invalid sequences become U+FFFD), then escape.
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes))
}

fn is_dangerous(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ') // exotic spaces can fake layout
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero width, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}' // word joiner, bidi isolates
            | '\u{FEFF}'
            | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi() {
        assert_eq!(escape("ok subject"), "ok subject");
        assert_eq!(escape("a\x1b[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape("x\u{202E}y"), "x\\u{202e}y");
        assert_eq!(escape("l1\nl2\r"), "l1\\nl2\\r");
        assert_eq!(escape("a\u{2003}b"), "a\\u{2003}b");
        assert_eq!(escape_bytes(b"\xff\xfeok"), "\u{FFFD}\u{FFFD}ok");
    }
}
