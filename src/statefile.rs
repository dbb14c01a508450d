//! weir's own files under `.git/weir/` that only remember what can be worked out again (stat
//! data, listings, a snapshot's state): losing one costs recomputing it. They are written in the
//! way that is cheapest on ext4, not durably: ext4 flushes a file to disk when it is renamed over
//! another one or written after being truncated to nothing (`auto_da_alloc`), which cost
//! milliseconds per save here.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Replaces the file at `path` with `bytes`: a reader sees the old file, the new one, or (for
/// a moment, or after a crash) none, never part of one. The old file is removed before the new
/// one is renamed into its place, which ext4 does not flush.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = fs::write(&tmp, bytes).and_then(|()| {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Appends `bytes` to the file at `path`. For files read line by line, where a torn last line
/// reads as damaged and is ignored.
pub(crate) fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(bytes)
}

/// Writes `bytes` over the file at `path` in place and cuts it to their length, without
/// truncating it to nothing first. For small files read whole, where a torn write reads as
/// damaged and is ignored.
pub(crate) fn overwrite(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)
}

/// Makes the file at `path`, if there is one, read as damaged: its first byte is overwritten in
/// place. For records that carry a header: cheaper than removing the file and making a new one
/// later (see `replace`). Where that cannot be done, the file is removed.
pub(crate) fn spoil(path: &Path) {
    let spoiled = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut file| file.write_all(b"-"));
    if let Err(e) = spoiled
        && e.kind() != io::ErrorKind::NotFound
    {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_overwrite_and_spoil_leave_exactly_the_new_bytes() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("state");
        replace(&path, b"first, longer").unwrap();
        replace(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        overwrite(&path, b"third, longer still").unwrap();
        overwrite(&path, b"4th").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"4th");
        append(&path, b", 5th").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"4th, 5th");
        spoil(&path);
        assert_eq!(fs::read(&path).unwrap(), b"-th, 5th");
        spoil(&dir.path().join("none"));
        assert!(!dir.path().join("none").exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }
}
