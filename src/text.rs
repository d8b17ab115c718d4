//! Text for messages: cut to a length on a character boundary; words quoted as a shell needs;
//! a short stable name for a text.

/// FNV-1a, 64 bits: a short stable name for a text (not a secret).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Cuts `text` to at most `max` bytes, on a character boundary, marking the cut.
pub(crate) fn shorten(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `words` joined by spaces, each quoted as a POSIX shell would need it to read the same word
/// back: an empty word is `""`, one with anything but plain characters is single-quoted.
pub(crate) fn shell_words(words: impl IntoIterator<Item = Vec<u8>>) -> String {
    let quoted: Vec<String> = words.into_iter().map(|w| shell_word(&w)).collect();
    quoted.join(" ")
}

fn shell_word(word: &[u8]) -> String {
    let text = String::from_utf8_lossy(word);
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,{}^".contains(c);
    if text.is_empty() {
        "\"\"".to_owned()
    } else if text.chars().all(plain) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_as_a_shell_needs() {
        let words = [
            "redis-server",
            "--save",
            "",
            "--port",
            "6379",
            "a b",
            "it's",
        ];
        assert_eq!(
            shell_words(words.iter().map(|w| w.as_bytes().to_vec())),
            r#"redis-server --save "" --port 6379 'a b' 'it'\''s'"#
        );
    }

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        assert_eq!(shorten("héllo".into(), 2), "h…");
        assert_eq!(shorten("short".into(), 10), "short");
    }
}
