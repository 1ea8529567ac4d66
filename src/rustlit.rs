//! Rust string literals for text that comes from the spec (patterns, JSON
//! examples), so that any text the spec accepts is a literal rustc and
//! rustfmt accept too.

/// `text` as a Rust string literal: a raw string when it can hold the text
/// (patterns stay readable: `r#"^\S+$"#`), with as many `#` as the text
/// needs; an escaped literal when it holds a carriage return or another
/// control character, which raw strings cannot carry (rustc refuses a bare
/// CR, and rustfmt trips over the others).
pub fn str_literal(text: &str) -> String {
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return format!("{text:?}");
    }
    let hashes = "#".repeat(longest_hash_run_after_quote(text) + 1);
    format!("r{hashes}\"{text}\"{hashes}")
}

/// The longest run of `#` that follows a `"` in `text`: a raw string with
/// fewer `#` would end there.
fn longest_hash_run_after_quote(text: &str) -> usize {
    text.split('"').skip(1).map(|after| after.bytes().take_while(|b| *b == b'#').count()).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_when_possible_escaped_when_not() {
        assert_eq!(str_literal(r"^\S+$"), r##"r#"^\S+$"#"##);
        assert_eq!(str_literal(r##"a"#b"##), r###"r##"a"#b"##"###);
        assert_eq!(str_literal(r###"a"##b"#"###), r####"r###"a"##b"#"###"####);
        assert_eq!(str_literal("a\rb"), r#""a\rb""#);
    }
}
