use std::collections::VecDeque;

/// Bytes kept from the start of a job's output.
pub const HEAD_BYTES: usize = 512 * 1024;
/// Bytes kept from the end of a job's output.
pub const TAIL_BYTES: usize = 512 * 1024;
/// A line longer than this is passed on in pieces, so one endless line cannot grow memory.
const MAX_LINE: usize = 8 * 1024;

/// A job's log within a fixed budget: the first and the last bytes, with the cut marked.
#[derive(Debug)]
pub struct CappedLog {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    cut: u64,
}

impl Default for CappedLog {
    fn default() -> Self {
        CappedLog::new(HEAD_BYTES, TAIL_BYTES)
    }
}

impl CappedLog {
    pub fn new(head_cap: usize, tail_cap: usize) -> CappedLog {
        CappedLog {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap,
            cut: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.tail_cap {
            self.cut += (self.tail.len() + bytes.len() - self.tail_cap) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.cut += overflow as u64;
        self.tail.extend(bytes);
    }

    /// The whole kept log, with a marker where bytes were cut.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len() + 64);
        out.extend_from_slice(&self.head);
        if self.cut > 0 {
            out.extend_from_slice(format!("\n[weir: {} bytes cut]\n", self.cut).as_bytes());
        }
        out.extend(self.tail.iter());
        out
    }
}

/// Splits a byte stream into lines for live display.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(String)) {
        for &b in bytes {
            if b == b'\n' {
                emit(take_line(&mut self.partial));
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE {
                    emit(take_line(&mut self.partial));
                }
            }
        }
    }

    pub fn finish(&mut self, mut emit: impl FnMut(String)) {
        if !self.partial.is_empty() {
            emit(take_line(&mut self.partial));
        }
    }
}

fn take_line(partial: &mut Vec<u8>) -> String {
    let line = String::from_utf8_lossy(partial)
        .trim_end_matches('\r')
        .to_owned();
    partial.clear();
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_logs_are_kept_whole() {
        let mut log = CappedLog::new(8, 8);
        log.push(b"hello ");
        log.push(b"world");
        assert_eq!(log.to_bytes(), b"hello world");
    }

    #[test]
    fn long_logs_keep_head_and_tail_and_mark_the_cut() {
        let mut log = CappedLog::new(4, 4);
        for chunk in [&b"abcdef"[..], b"ghij", b"klmnopqrstuvwxyz"] {
            log.push(chunk);
        }
        assert_eq!(log.to_bytes(), b"abcd\n[weir: 18 bytes cut]\nwxyz");
    }

    #[test]
    fn lines_are_split_across_writes_and_capped() {
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::default();
        splitter.push(b"one\ntw", |l| lines.push(l));
        splitter.push(b"o\r\nthree", |l| lines.push(l));
        splitter.finish(|l| lines.push(l));
        assert_eq!(lines, ["one", "two", "three"]);

        let mut lines = Vec::new();
        splitter.push(&vec![b'x'; MAX_LINE + 1], |l| lines.push(l));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
    }
}
