//! Checks on SQL text that pgmirror embeds in its own statements (`--where` conditions,
//! `--query` text). Such text is placed inside parentheses, so it must not be able to
//! close them: `a = 1) OR (b = 2` would turn `ctid ... AND (a = 1) OR (b = 2)` into a
//! different query that reads some rows once per chunk. PostgreSQL accepts such text, so
//! the check is ours: outside literals, identifiers and comments, the parentheses must
//! balance without ever closing one that the text did not open, and nothing may end the
//! statement or leave a literal or comment open.

/// Why `text` cannot stand inside parentheses as one unit, if it cannot.
pub fn enclosable(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        at = match bytes[at] {
            b'(' => {
                depth += 1;
                at + 1
            }
            b')' if depth == 0 => {
                return Err(format!(
                    "the parenthesis at character {} closes one it did not open",
                    char_position(text, at)
                ))
            }
            b')' => {
                depth -= 1;
                at + 1
            }
            b';' => return Err("it contains a ';' outside a literal: give one expression".to_owned()),
            b'\'' => {
                // An E'...' string takes backslash escapes.
                let escapes = at > 0
                    && matches!(bytes[at - 1], b'e' | b'E')
                    && !is_word_byte(bytes, at.wrapping_sub(2));
                skip_quoted(bytes, at, b'\'', escapes).ok_or("a string literal is not closed")?
            }
            b'"' => skip_quoted(bytes, at, b'"', false).ok_or("a quoted identifier is not closed")?,
            // A comment that a newline ends is harmless; one that runs to the end of the
            // text would swallow the parenthesis that follows it.
            b'-' if bytes.get(at + 1) == Some(&b'-') => match bytes[at..].iter().position(|&b| b == b'\n') {
                Some(offset) => at + offset + 1,
                None => return Err("it ends in a -- comment, which would swallow what follows it".to_owned()),
            },
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                skip_block_comment(bytes, at).ok_or("a /* comment is not closed")?
            }
            b'$' => skip_dollar_quoted(bytes, at).ok_or("a dollar-quoted string is not closed")?,
            _ => at + 1,
        };
    }
    if depth > 0 {
        return Err(format!("{depth} parenthesis(es) are not closed"));
    }
    Ok(())
}

/// `bytes[at]` can be part of an identifier (letters, digits, `_`, `$`, non-ASCII): a quote
/// after one is not an E'' prefix, and a `$` inside one opens no dollar quote.
fn is_word_byte(bytes: &[u8], at: usize) -> bool {
    at < bytes.len()
        && (bytes[at].is_ascii_alphanumeric() || matches!(bytes[at], b'_' | b'$') || bytes[at] >= 0x80)
}

fn char_position(text: &str, byte: usize) -> usize {
    text.char_indices().take_while(|(i, _)| *i < byte).count() + 1
}

/// The index after the closing quote of the quoted run starting at `start`; a doubled
/// quote is an escaped one.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8, backslash_escapes: bool) -> Option<usize> {
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if backslash_escapes => at += 2,
            b if b == quote && bytes.get(at + 1) == Some(&quote) => at += 2,
            b if b == quote => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

/// Block comments nest in PostgreSQL.
fn skip_block_comment(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = start;
    while at + 1 < bytes.len() {
        match (bytes[at], bytes[at + 1]) {
            (b'/', b'*') => {
                depth += 1;
                at += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                at += 2;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// `$tag$ ... $tag$`; a `$` that does not open such a string (a parameter such as `$1`)
/// is an ordinary character.
fn skip_dollar_quoted(bytes: &[u8], start: usize) -> Option<usize> {
    let tag_end = start
        + 1
        + bytes[start + 1..]
            .iter()
            .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
            .count();
    let opens = bytes.get(tag_end) == Some(&b'$')
        && !is_word_byte(bytes, start.wrapping_sub(1))
        && !bytes.get(start + 1).is_some_and(u8::is_ascii_digit);
    if !opens {
        return Some(start + 1);
    }
    let tag = &bytes[start..=tag_end];
    let body = tag_end + 1;
    bytes[body..]
        .windows(tag.len())
        .position(|window| window == tag)
        .map(|offset| body + offset + tag.len())
}

#[cfg(test)]
mod tests {
    use super::enclosable;

    #[test]
    fn ordinary_conditions_are_accepted() {
        for text in [
            r#""Id" IN (SELECT "Id" FROM "NonDraftPrompts")"#,
            "name = 'it''s (not) a paren' AND note LIKE '%)%'",
            r#""odd)name" > 0"#,
            "body ~ E'\\\\)\\'' OR f($$ ) $$) OR g($x$ ( $x$)",
            "a /* a ) comment /* nested ( */ */ = 1",
            "price > $1",
            "status = 'open' -- only open ones\nAND total > 0",
            "x$$y$$ = 1",
            "",
        ] {
            assert_eq!(enclosable(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn text_that_escapes_its_parentheses_is_refused() {
        for (text, reason) in [
            ("a = 1) OR (b = 2", "closes one it did not open"),
            ("true) --", "closes one it did not open"),
            ("a = 1 --", "-- comment"),
            ("a = 1 -- to the end) OR (true", "-- comment"),
            ("(a = 1", "not closed"),
            ("true; DELETE FROM t", "';'"),
            ("name = 'unterminated", "string literal"),
            (r#""unterminated"#, "quoted identifier"),
            ("a /* open", "comment"),
            ("f($$ open", "dollar-quoted"),
            ("é = 1) OR (x", "character 6"),
        ] {
            let refused = enclosable(text).expect_err(text);
            assert!(refused.contains(reason), "{text}: {refused}");
        }
    }
}
