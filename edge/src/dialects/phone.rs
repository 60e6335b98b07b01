//! Phone numbers as people type them, for dialects whose documents accept more
//! than the native API's strict E.164 (`validate::check_e164`).
//!
//! Accepted: digits with spaces, dashes, dots and parentheses between them, and
//! either a leading `+` or a leading international `00`. A number without a
//! country code is refused: guessing a country would dial the wrong person.

/// Longest input looked at; a longer one is refused unread.
pub const MAX_INPUT_CHARS: usize = 40;

/// `" +34 612-345 678 "` -> `"+34612345678"`; `"0034 612 345 678"` -> the same.
/// `None` when the result is not E.164 (`+`, 7 to 15 digits, no leading 0).
pub fn normalize(input: &str) -> Option<String> {
    let s = input.trim();
    if s.len() > MAX_INPUT_CHARS {
        return None;
    }
    let (rest, had_plus) = match s.strip_prefix('+') {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = if had_plus {
        digits
    } else {
        digits.strip_prefix("00")?.to_string()
    };
    let ok = (7..=15).contains(&digits.len()) && !digits.starts_with('0');
    ok.then(|| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn punctuation_goes_and_00_becomes_plus() {
        for (input, want) in [
            ("+34612345678", "+34612345678"),
            (" +34 612-345 678 ", "+34612345678"),
            ("0034 612 345 678", "+34612345678"),
            ("+1 (415) 555.0100", "+14155550100"),
        ] {
            assert_eq!(normalize(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn no_country_code_letters_or_bad_lengths_are_refused() {
        for input in [
            "612345678",
            "+34 612 345 678 ext 2",
            "+0612345678",
            "+123456",
            "+1234567890123456",
            "0012",
            "",
            "+",
            "++34612345678",
            "+3461234567８",
            &"1".repeat(100),
        ] {
            assert_eq!(normalize(input), None, "{input:?}");
        }
    }
}
