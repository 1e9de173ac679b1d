//! Response bodies made storable before anything reads them, by one documented rule each:
//!
//! - **NUL** (`\u0000` in a string) is valid JSON and Jira serves it, but PostgreSQL's `text`
//!   and `jsonb` refuse it: it becomes U+2400 SYMBOL FOR NULL (`␀`), one character for one, so
//!   lengths and positions stay.
//! - **A lone UTF-16 surrogate** (`\ud83d` without its pair, or a trailing half alone) is valid
//!   JSON text but no Unicode character: it becomes U+FFFD REPLACEMENT CHARACTER.
//! - **Bytes that are not UTF-8** become U+FFFD, as `String::from_utf8_lossy` reads them.
//!
//! Everything else passes byte for byte, and a body that needs none of this is not copied.

use std::borrow::Cow;

/// The body with NULs, lone surrogates and invalid UTF-8 replaced (see the module's rules).
pub fn clean(body: &[u8]) -> Cow<'_, [u8]> {
    let text: Cow<'_, [u8]> = match std::str::from_utf8(body) {
        Ok(_) => Cow::Borrowed(body),
        Err(_) => Cow::Owned(String::from_utf8_lossy(body).into_owned().into_bytes()),
    };
    if !needs_escape_work(&text) {
        return text;
    }
    Cow::Owned(rewrite_escapes(&text))
}

/// Whether the text holds a `\u0000` or a surrogate escape at all (a fast first look).
fn needs_escape_work(text: &[u8]) -> bool {
    text.windows(3)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && (w[2] == b'0' || w[2] == b'd' || w[2] == b'D'))
}

/// The four hex digits after `\u` at `at` (the index of the `u`), if they are there.
fn hex4(text: &[u8], at: usize) -> Option<u16> {
    let digits = text.get(at + 1..at + 5)?;
    let digits = std::str::from_utf8(digits).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

/// Rewrites `\u0000` to `\u2400` and lone surrogate escapes to `\ufffd`, inside strings only.
fn rewrite_escapes(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut i = 0;
    while i < text.len() {
        let byte = text[i];
        if !in_string {
            in_string = byte == b'"';
            out.push(byte);
            i += 1;
            continue;
        }
        match byte {
            b'"' => {
                in_string = false;
                out.push(byte);
                i += 1;
            }
            b'\\' if text.get(i + 1) == Some(&b'u') => {
                let Some(unit) = hex4(text, i + 1) else {
                    // Not a complete escape: leave it for the parser to judge.
                    out.push(byte);
                    i += 1;
                    continue;
                };
                match unit {
                    0 => out.extend_from_slice(b"\\u2400"),
                    0xD800..=0xDBFF => {
                        let pair = (text.get(i + 6) == Some(&b'\\')
                            && text.get(i + 7) == Some(&b'u'))
                        .then(|| hex4(text, i + 7))
                        .flatten()
                        .filter(|low| (0xDC00..=0xDFFF).contains(low));
                        match pair {
                            Some(_) => {
                                out.extend_from_slice(&text[i..i + 12]);
                                i += 12;
                                continue;
                            }
                            None => out.extend_from_slice(b"\\ufffd"),
                        }
                    }
                    0xDC00..=0xDFFF => out.extend_from_slice(b"\\ufffd"),
                    _ => out.extend_from_slice(&text[i..i + 6]),
                }
                i += 6;
            }
            b'\\' => {
                // Any other escape is two bytes (`\"`, `\\`, `\n`, …): keep both, so an
                // escaped quote or backslash is not read as the end of the string.
                out.extend_from_slice(&text[i..(i + 2).min(text.len())]);
                i += 2;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// How deeply `text` (JSON) nests arrays and objects, strings skipped.
pub fn depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(text: &str) -> String {
        String::from_utf8(clean(text.as_bytes()).into_owned()).expect("UTF-8")
    }

    #[test]
    fn nul_and_lone_surrogates_become_storable_characters_and_pairs_stay() {
        assert_eq!(cleaned(r#"{"s":"a\u0000b"}"#), r#"{"s":"a\u2400b"}"#);
        assert_eq!(cleaned(r#"{"s":"x\ud83dy"}"#), r#"{"s":"x\ufffdy"}"#);
        assert_eq!(cleaned(r#"{"s":"\ude00"}"#), r#"{"s":"\ufffd"}"#);
        assert_eq!(
            cleaned(r#"{"s":"\ud83d\ude00"}"#),
            r#"{"s":"\ud83d\ude00"}"#
        );
        assert_eq!(
            cleaned(r#"{"s":"\ud83d\u0041"}"#),
            r#"{"s":"\ufffd\u0041"}"#
        );
        let value: serde_json::Value =
            serde_json::from_str(&cleaned(r#"{"s":"a\u0000\ud83d"}"#)).expect("parses");
        assert_eq!(value["s"], "a\u{2400}\u{fffd}");
    }

    #[test]
    fn escaped_backslashes_and_quotes_are_not_mistaken_for_escapes() {
        // `\\u0000` is a backslash followed by the text u0000, not a NUL.
        let text = r#"{"s":"\\u0000 \" \\"}"#;
        assert_eq!(cleaned(text), text);
        let plain = r#"{"id":"1","u":"é"}"#;
        assert!(matches!(clean(plain.as_bytes()), Cow::Borrowed(_)));
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        let body = b"{\"s\":\"a\xffb\"}";
        assert_eq!(
            cleaned(std::str::from_utf8(&clean(body)).expect("utf8")),
            "{\"s\":\"a\u{fffd}b\"}"
        );
    }

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(depth(br#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(depth(br#"{"a":"[[[[\"]]"}"#), 1);
        assert_eq!(depth(b"1"), 0);
    }
}
