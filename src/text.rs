//! Text from outside (a guest, libvirt, the user) made safe for one line of
//! output. Two ways: [`one_line`] for a reason (whitespace runs collapse, the
//! length is bounded) and [`flatten`] for a renderer's slot (each control
//! character becomes one space, so widths and columns stay as they were).
//! Both drop invisible format characters.

/// Unicode format characters: invisible, yet they reorder or hide the
/// text around them (U+202E RIGHT-TO-LEFT OVERRIDE makes `exe.gpj` read
/// `jpg.exe`; zero-width characters make two names look equal). Never shown.
pub fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

/// `text` without [`is_format_char`] characters (host-side names).
pub fn without_format_chars(text: &str) -> String {
    text.chars().filter(|c| !is_format_char(*c)).collect()
}

/// Collapses control characters and whitespace runs to one space, drops
/// format characters, and cuts the text to `max` characters, so guest text
/// can go into a one-line reason.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in text.chars() {
        if is_format_char(c) {
            continue;
        }
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if out.chars().count() >= max {
            out.push('…');
            break;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// Text that came from a guest, libvirt or the user, made safe for a
/// one-line slot: every control character (newline, CR, tab, ...) becomes a
/// space, invisible format characters (bidi overrides) go.
pub fn flatten(text: &str) -> String {
    text.chars()
        .filter(|c| !is_format_char(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max_chars` characters; a cut string ends in `…`.
pub fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let keep = max_chars.saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_bounds_and_flattens() {
        assert_eq!(one_line("  a\r\n b\t", 10), "a b");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("", 3), "");
        assert_eq!(one_line("a\u{202e}b\u{200b}c\u{feff}", 10), "abc");
    }

    #[test]
    fn flatten_keeps_widths_but_no_control_characters() {
        assert_eq!(flatten("a\nb\r\nc\td\u{7f}"), "a b  c d ");
        assert_eq!(flatten("ü ok"), "ü ok");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate_chars("üüüüü", 5), "üüüüü");
        assert_eq!(truncate_chars("üüüüüü", 5), "üüüü…");
        assert_eq!(truncate_chars("abc", 0), "…");
    }
}
