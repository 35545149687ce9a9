//! What a display name may be: shown to every member of a room, in ChatSender and in
//! any Matrix client, so nothing that can disguise or break the text around it.

/// Why a display name is refused; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    #[error("display_name must be 1 to {MAX_BYTES} bytes")]
    Length,
    #[error("display_name must not contain control characters (found U+{0:04X})")]
    Control(u32),
    #[error(
        "display_name must not contain bidirectional overrides or isolates (found U+{0:04X}), \
         which can make a name read as another"
    )]
    Bidi(u32),
    #[error("display_name is blank once its invisible characters are removed")]
    Blank,
}

/// The longest display name, in bytes of UTF-8.
pub const MAX_BYTES: usize = 256;

/// The name as it will be kept (trimmed), or why it is refused.
pub fn check(name: &str) -> Result<&str, DisplayNameError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_BYTES {
        return Err(DisplayNameError::Length);
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(DisplayNameError::Control(c.into()));
    }
    if let Some(c) = name.chars().find(|c| is_bidi_control(*c)) {
        return Err(DisplayNameError::Bidi(c.into()));
    }
    if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(DisplayNameError::Blank);
    }
    Ok(name)
}

/// Embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show as nothing.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_trimmed() {
        for (name, kept) in [
            ("  Alice  ", "Alice"),
            ("Zoë", "Zoë"),
            ("李小龍", "李小龍"),
            ("محمد", "محمد"),
            ("Bob 🍵", "Bob 🍵"),
        ] {
            assert_eq!(check(name), Ok(kept), "{name}");
        }
        assert_eq!(check(&"a".repeat(MAX_BYTES)).map(str::len), Ok(MAX_BYTES));
    }

    #[test]
    fn names_that_disguise_or_break_text_are_refused_saying_why() {
        use DisplayNameError::*;
        for (name, why) in [
            ("", Length),
            ("   ", Length),
            (&*"a".repeat(MAX_BYTES + 1), Length),
            ("ali\0ce", Control(0)),
            ("\u{1b}[31mred", Control(0x1b)),
            ("two\nlines", Control(0x0a)),
            ("\u{202E}ecilA", Bidi(0x202e)),
            ("a\u{2066}b", Bidi(0x2066)),
            ("\u{200B}", Blank),
            ("\u{200B} \u{FEFF}\u{3164}", Blank),
        ] {
            assert_eq!(check(name), Err(why.clone()), "{name:?}");
            assert!(!why.to_string().is_empty());
        }
        assert!(
            Control(0x1b).to_string().contains("U+001B"),
            "the message names the character"
        );
    }
}
