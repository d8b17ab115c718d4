//! Text for messages: cut to a length, on a character boundary.

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
