//! Masking secret values. A secret's value becomes a set of byte patterns: the raw value, each
//! line of a multi-line value, its hex (both cases) and its base64 (standard and URL-safe, with
//! and without padding, and the part that stays the same whatever the value's alignment inside a
//! longer base64 stream). [`Masker`] replaces every match with `***` in a stream that arrives in
//! chunks of any size, so a value split across two writes is masked all the same.

use std::io::{self, Read};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

/// What a masked value is replaced with.
pub const MASK: &[u8] = b"***";

/// Patterns derived from a value (a line of it, a piece of an encoding) shorter than this are
/// not masked: they would blank out common short words everywhere and reveal little on their
/// own. The value itself is always masked, however short.
pub const MIN_DERIVED: usize = 4;

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Everything to mask for a set of values, searched for at once.
pub struct Patterns {
    matcher: AhoCorasick,
    /// Bytes of the longest pattern: how far back a match can start.
    longest: usize,
    /// Whether a pattern contains a newline; if none does, a match never crosses a line end.
    multiline: bool,
}

// Derived by hand so that no debug print can show a pattern.
impl std::fmt::Debug for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patterns")
            .field("count", &self.matcher.patterns_len())
            .finish_non_exhaustive()
    }
}

impl Patterns {
    /// The patterns of `values`; empty values are ignored.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Patterns, String> {
        let mut patterns: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| !v.is_empty())
            .flat_map(variants)
            .collect();
        patterns.sort();
        patterns.dedup();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            // The error describes sizes and limits, never the patterns.
            .map_err(|e| format!("cannot prepare secret masking: {e}"))?;
        Ok(Patterns {
            matcher,
            longest: patterns.iter().map(Vec::len).max().unwrap_or(0),
            multiline: patterns.iter().any(|p| p.contains(&b'\n')),
        })
    }

    /// `bytes` with every match replaced, in one go.
    pub fn mask(self: &Arc<Self>, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut masker = Masker::new(Arc::clone(self));
        masker.push(bytes, |b| out.extend_from_slice(b));
        masker.finish(|b| out.extend_from_slice(b));
        out
    }

    /// [`Patterns::mask`] for text.
    pub fn mask_str(self: &Arc<Self>, text: &str) -> String {
        String::from_utf8_lossy(&self.mask(text.as_bytes())).into_owned()
    }

    /// Whether anything read from `reader` matches, reading it in chunks.
    pub fn found_in(&self, mut reader: impl Read) -> io::Result<bool> {
        let keep = self.longest.saturating_sub(1);
        let mut window: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            window.extend_from_slice(&chunk[..n]);
            if self.matcher.is_match(&window[..]) {
                return Ok(true);
            }
            // Any match not yet seen starts in the last `keep` bytes.
            let cut = window.len().saturating_sub(keep);
            window.drain(..cut);
        }
    }
}

/// Masks a byte stream that arrives in chunks. Between chunks it holds back the bytes a match
/// could still start in (at most the longest pattern less one, and only up to the last newline
/// when no pattern spans lines), so the output is the same however the stream is split.
pub struct Masker {
    patterns: Arc<Patterns>,
    pending: Vec<u8>,
}

impl Masker {
    pub fn new(patterns: Arc<Patterns>) -> Masker {
        Masker {
            patterns,
            pending: Vec::new(),
        }
    }

    /// Takes the next chunk; passes on, masked, every byte that no later chunk can change.
    pub fn push(&mut self, bytes: &[u8], out: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(bytes);
        self.release(false, out);
    }

    /// The stream ended: passes on, masked, everything held back.
    pub fn finish(&mut self, out: impl FnMut(&[u8])) {
        self.release(true, out);
    }

    fn release(&mut self, end: bool, mut out: impl FnMut(&[u8])) {
        let len = self.pending.len();
        // A match starting before `safe` lies wholly inside what has arrived.
        let mut safe = if end {
            len
        } else {
            len.saturating_sub(self.patterns.longest.saturating_sub(1))
        };
        if !end
            && !self.patterns.multiline
            && let Some(newline) = self.pending.iter().rposition(|&b| b == b'\n')
        {
            safe = safe.max(newline + 1);
        }
        let mut masked = Vec::new();
        let mut cursor = 0;
        for found in self.patterns.matcher.find_iter(&self.pending[..]) {
            if found.start() >= safe {
                break;
            }
            masked.extend_from_slice(&self.pending[cursor..found.start()]);
            masked.extend_from_slice(MASK);
            cursor = found.end();
        }
        let released = safe.max(cursor);
        masked.extend_from_slice(&self.pending[cursor..released]);
        self.pending.drain(..released);
        if !masked.is_empty() {
            out(&masked);
        }
    }
}

/// Everything that reveals `value`: the value, its lines, and its encodings.
fn variants(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![value.to_vec()];
    let mut derived = |pattern: Vec<u8>| {
        if pattern.len() >= MIN_DERIVED {
            out.push(pattern);
        }
    };
    if value.contains(&b'\n') {
        for line in value.split(|&b| b == b'\n') {
            derived(line.strip_suffix(b"\r").unwrap_or(line).to_vec());
        }
    }
    derived(hex(value, b"0123456789abcdef"));
    derived(hex(value, b"0123456789ABCDEF"));
    for alphabet in [STANDARD, URL_SAFE] {
        let bare = base64(value, alphabet);
        let mut padded = bare.clone();
        padded.resize(bare.len().div_ceil(4) * 4, b'=');
        derived(padded);
        derived(bare);
        // Inside a longer stream the value starts 0, 1 or 2 bytes into a 3-byte group; for
        // each, the characters made only of the value's own bits are the same wherever it is.
        for shift in 0..3 {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(value);
            let encoded = base64(&shifted, alphabet);
            let start = (8 * shift).div_ceil(6);
            let end = 8 * (shift + value.len()) / 6;
            if start < end {
                derived(encoded[start..end].to_vec());
            }
        }
    }
    out
}

fn hex(bytes: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    bytes
        .iter()
        .flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 0xf)]])
        .collect()
}

/// Base64 without padding: a partial last group gives two or three characters.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = group.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(alphabet[index as usize]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn patterns(values: &[&str]) -> Arc<Patterns> {
        Arc::new(Patterns::new(values.iter().map(|v| v.as_bytes())).unwrap())
    }

    fn masked(p: &Arc<Patterns>, text: &str) -> String {
        p.mask_str(text)
    }

    /// The stream masked chunk by chunk, split at `cuts`.
    fn masked_in_chunks(p: &Arc<Patterns>, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut masker = Masker::new(Arc::clone(p));
        let mut from = 0;
        for &cut in cuts {
            let cut = cut.clamp(from, stream.len());
            masker.push(&stream[from..cut], |b| out.extend_from_slice(b));
            from = cut;
        }
        masker.push(&stream[from..], |b| out.extend_from_slice(b));
        masker.finish(|b| out.extend_from_slice(b));
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn base64_matches_the_usual_encodings() {
        assert_eq!(base64(b"", STANDARD), b"");
        assert_eq!(base64(b"f", STANDARD), b"Zg");
        assert_eq!(base64(b"fo", STANDARD), b"Zm8");
        assert_eq!(base64(b"foo", STANDARD), b"Zm9v");
        assert_eq!(base64(b"foob", STANDARD), b"Zm9vYg");
        assert_eq!(base64(&[0xfb, 0xff], STANDARD), b"+/8");
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE), b"-_8");
        assert_eq!(hex(&[0xab, 0x01], b"0123456789ABCDEF"), b"AB01");
    }

    #[test]
    fn the_raw_value_and_its_encodings_are_masked() {
        let p = patterns(&["s3cr3t-value"]);
        assert_eq!(masked(&p, "token=s3cr3t-value;"), "token=***;");
        // base64 -w0, both alphabets, padded or not; hex in both cases.
        assert_eq!(masked(&p, "czNjcjN0LXZhbHVl"), "***");
        assert_eq!(masked(&p, "7333637233742d76616c7565"), "***");
        assert_eq!(masked(&p, "7333637233742D76616C7565!"), "***!");
        let p = patterns(&["a?b>c~d"]);
        assert_eq!(masked(&p, "YT9iPmN+ZA=="), "***");
        assert_eq!(masked(&p, "YT9iPmN+ZA"), "***");
        assert_eq!(masked(&p, "YT9iPmN-ZA=="), "***");
        assert_eq!(masked(&p, "YT9iPmN-ZA"), "***");
    }

    #[test]
    fn base64_inside_a_longer_stream_is_masked_at_any_alignment() {
        let secret = "correct horse battery staple";
        let p = patterns(&[secret]);
        for prefix in ["", "u", "us", "user:"] {
            for suffix in ["", "\n", "!", "!!"] {
                for alphabet in [STANDARD, URL_SAFE] {
                    let text = format!("{prefix}{secret}{suffix}");
                    let encoded = String::from_utf8(base64(text.as_bytes(), alphabet)).unwrap();
                    let out = masked(&p, &encoded);
                    assert!(out.contains("***"), "{encoded} -> {out}");
                    // What is left is the other bytes' characters and the few mixing them in.
                    let left = out.replace("***", "");
                    let others = (prefix.len() + suffix.len()) * 4 / 3;
                    assert!(left.len() <= others + 6, "{encoded} -> {out}");
                }
            }
        }
    }

    #[test]
    fn each_line_of_a_multi_line_value_is_masked_but_short_lines_are_not() {
        let p = patterns(&["-----BEGIN KEY-----\r\nabcdefgh\nxy\n-----END KEY-----"]);
        assert_eq!(
            masked(&p, "line: abcdefgh\nalso -----END KEY-----\nxy\n"),
            "line: ***\nalso ***\nxy\n"
        );
        assert_eq!(
            masked(&p, "-----BEGIN KEY-----\r\nabcdefgh\nxy\n-----END KEY-----"),
            "***"
        );
    }

    #[test]
    fn a_value_split_across_writes_is_masked() {
        let p = patterns(&["split-secret"]);
        let mut out = Vec::new();
        let mut masker = Masker::new(Arc::clone(&p));
        masker.push(b"before spl", |b| out.extend_from_slice(b));
        masker.push(b"it-sec", |b| out.extend_from_slice(b));
        masker.push(b"ret after\nnext", |b| out.extend_from_slice(b));
        masker.finish(|b| out.extend_from_slice(b));
        assert_eq!(out, b"before *** after\nnext");
    }

    #[test]
    fn complete_lines_are_released_at_once_when_no_value_spans_lines() {
        let p = patterns(&["a-long-secret-value"]);
        let mut out = Vec::new();
        let mut masker = Masker::new(p);
        masker.push(b"hello\nwor", |b| out.extend_from_slice(b));
        assert_eq!(out, b"hello\n");
    }

    #[test]
    fn the_longest_match_wins() {
        let p = patterns(&["abcd", "abcdefgh"]);
        assert_eq!(masked(&p, "xabcdefghx abcdx"), "x***x ***x");
    }

    #[test]
    fn found_in_sees_a_value_across_read_chunks() {
        let p = patterns(&["needle-in-a-haystack"]);
        let mut data = vec![b'.'; 64 * 1024 - 5];
        data.extend_from_slice(b"needle-in-a-haystack");
        data.extend_from_slice(&[b'.'; 100]);
        assert!(p.found_in(&data[..]).unwrap());
        assert!(!p.found_in(&b"needle-in-a-haystac"[..]).unwrap());
        let encoded = base64(b"xxneedle-in-a-haystackxx", STANDARD);
        assert!(p.found_in(&encoded[..]).unwrap());
    }

    #[test]
    fn debug_output_shows_no_pattern() {
        let p = patterns(&["visible?"]);
        assert!(!format!("{p:?}").contains("visible"));
    }

    proptest! {
        #[test]
        fn any_split_of_the_stream_gives_the_same_output_and_no_value_survives(
            values in proptest::collection::vec("[a-d\n]{1,12}", 1..3),
            stream in proptest::collection::vec(prop_oneof![
                "[a-e\n ]{0,6}".prop_map(String::into_bytes),
                Just(b"abcd".to_vec()),
            ], 0..8),
            pick in proptest::collection::vec(0usize..3, 0..8),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let p = Arc::new(Patterns::new(values.iter().map(|v| v.as_bytes())).unwrap());
            // A stream of noise with the values (and their encodings) mixed in.
            let mut bytes = Vec::new();
            for (i, piece) in stream.iter().enumerate() {
                bytes.extend_from_slice(piece);
                let value = values[i % values.len()].as_bytes();
                match pick.get(i) {
                    Some(0) => bytes.extend_from_slice(value),
                    Some(1) => bytes.extend_from_slice(&base64(value, STANDARD)),
                    Some(_) => bytes.extend_from_slice(&hex(value, b"0123456789abcdef")),
                    None => {}
                }
            }
            let mut cuts = cuts;
            cuts.sort();
            let whole = p.mask(&bytes);
            let chunked = masked_in_chunks(&p, &bytes, &cuts);
            prop_assert_eq!(&chunked, &whole);
            for value in &values {
                prop_assert!(!contains(&whole, value.as_bytes()));
            }
        }

        #[test]
        fn encoded_values_never_survive(value in proptest::collection::vec(any::<u8>(), 4..40),
                                        prefix in proptest::collection::vec(any::<u8>(), 0..5)) {
            let p = Arc::new(Patterns::new([&value[..]]).unwrap());
            let mut text = prefix.clone();
            text.extend_from_slice(&value);
            for alphabet in [STANDARD, URL_SAFE] {
                let encoded = base64(&text, alphabet);
                let out = p.mask(&encoded);
                prop_assert!(contains(&out, MASK));
                // The inner, alignment-independent characters are all gone: what is left is
                // the prefix's characters and the one or two mixing in the value's edges.
                let left = out.len() - MASK.len();
                prop_assert!(left <= prefix.len().div_ceil(3) * 4 + 4);
            }
        }
    }
}
