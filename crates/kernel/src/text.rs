//! Free text a person types into a record (an incident's summary, a note, a reason).

/// Why a piece of free text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    /// Nothing but whitespace.
    Empty,
    /// Over the limit, in characters, after trimming.
    TooLong,
    /// A control character other than a newline (which could forge lines in logs and exports).
    ControlCharacters,
}

/// `text` trimmed, if it is not empty, holds at most `max` characters and no control characters
/// but newlines.
///
/// # Errors
/// The first rule it breaks, in the order above.
///
/// ```
/// use kernel::{TextProblem, clean_text};
/// assert_eq!(clean_text("  hola\n ", 10), Ok("hola"));
/// assert_eq!(clean_text("   ", 10), Err(TextProblem::Empty));
/// assert_eq!(clean_text("abc", 2), Err(TextProblem::TooLong));
/// assert_eq!(clean_text("a\u{7}b", 10), Err(TextProblem::ControlCharacters));
/// ```
pub fn clean_text(text: &str, max: usize) -> Result<&str, TextProblem> {
    let text = text.trim();
    if text.is_empty() {
        Err(TextProblem::Empty)
    } else if text.chars().count() > max {
        Err(TextProblem::TooLong)
    } else if text.chars().any(|c| c.is_control() && c != '\n') {
        Err(TextProblem::ControlCharacters)
    } else {
        Ok(text)
    }
}
