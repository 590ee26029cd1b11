//! Telemetry windows on disk: append-only segment files, one per
//! [`SEGMENT_SECONDS`] of arrival, each line one stored window as JSON. Retention
//! deletes a segment whole. Only a small index (where each window lies) lives in
//! sled, so the control plane's memory does not grow with the telemetry it keeps.
//!
//! This module does the file work only; [`crate::telemetry_store`] keeps the index and
//! decides what is appended.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

/// Seconds of arrival time one segment covers; retention works in these steps.
pub const SEGMENT_SECONDS: u64 = 600;

/// Where one window lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The segment: the first second it covers.
    pub segment: u64,
    /// Byte offset of the window's line.
    pub offset: u64,
    /// Length of the line, its newline included.
    pub len: u64,
}

/// The segment that covers `received_at`.
pub fn segment_of(received_at: u64) -> u64 {
    received_at - received_at % SEGMENT_SECONDS
}

/// The segment files of one folder.
pub struct WindowLog {
    dir: PathBuf,
    writer: Mutex<Writer>,
}

/// The file being appended to, and those written since the last sync.
#[derive(Default)]
struct Writer {
    /// The newest segment, its file and its length.
    active: Option<(u64, File, u64)>,
    /// Files appended to since the last [`WindowLog::sync`].
    unsynced: Vec<File>,
}

impl Writer {
    /// Stops appending to `segment` (it is being cut or deleted); the next append
    /// opens it afresh.
    fn let_go(&mut self, segment: u64) {
        if self
            .active
            .as_ref()
            .is_some_and(|(active, _, _)| *active == segment)
        {
            self.active = None;
        }
    }
}

impl WindowLog {
    /// Opens (creating) the folder `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(WindowLog {
            dir: dir.to_owned(),
            writer: Mutex::new(Writer::default()),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{segment:010}.jsonl"))
    }

    /// Appends `line` (one JSON document, no newline) to the segment of `received_at`.
    pub fn append(&self, received_at: u64, line: &[u8]) -> io::Result<Location> {
        let segment = segment_of(received_at);
        let mut writer = self.writer();
        if writer
            .active
            .as_ref()
            .is_none_or(|(at, _, _)| *at != segment)
        {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(segment))?;
            let len = file.seek(SeekFrom::End(0))?;
            if let Some((_, previous, _)) = writer.active.take() {
                writer.unsynced.push(previous);
            }
            writer.active = Some((segment, file, len));
        }
        let Some((_, file, len)) = writer.active.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        let mut record = Vec::with_capacity(line.len() + 1);
        record.extend_from_slice(line);
        record.push(b'\n');
        let offset = *len;
        if let Err(err) = file.write_all(&record) {
            // Leave no partial line behind.
            file.set_len(offset)?;
            return Err(err);
        }
        *len += record.len() as u64;
        Ok(Location {
            segment,
            offset,
            len: record.len() as u64,
        })
    }

    /// Takes back the line at `at`, the last one appended (its index entry could not be
    /// written).
    pub fn undo(&self, at: Location) -> io::Result<()> {
        let mut writer = self.writer();
        if let Some((segment, file, len)) = writer.active.as_mut()
            && *segment == at.segment
            && *len == at.offset + at.len
        {
            file.set_len(at.offset)?;
            *len = at.offset;
        }
        Ok(())
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> io::Result<()> {
        let (active, unsynced) = {
            let mut writer = self.writer();
            let active = match &writer.active {
                Some((_, file, _)) => Some(file.try_clone()?),
                None => None,
            };
            (active, std::mem::take(&mut writer.unsynced))
        };
        for file in unsynced.iter().chain(active.iter()) {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Every segment on disk, oldest first.
    pub fn segments(&self) -> io::Result<Vec<u64>> {
        let mut segments = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(segment) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".jsonl"))
                .and_then(|stem| stem.parse().ok())
            {
                segments.push(segment);
            }
        }
        segments.sort_unstable();
        Ok(segments)
    }

    /// How much of `segment` is whole lines: what the writer has finished, for the
    /// segment it is appending to.
    fn readable_len(&self, segment: u64) -> io::Result<u64> {
        if let Some((active, _, len)) = &self.writer().active
            && *active == segment
        {
            return Ok(*len);
        }
        self.len_on_disk(segment)
    }

    /// Calls `visit` with each line of `segment` from byte `from` (a line's start) on,
    /// in order, without its newline.
    pub fn for_each_line(
        &self,
        segment: u64,
        from: u64,
        mut visit: impl FnMut(Location, &[u8]),
    ) -> io::Result<()> {
        let limit = self.readable_len(segment)?;
        let mut file = match File::open(self.path(segment)) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        file.seek(SeekFrom::Start(from))?;
        let mut reader =
            BufReader::with_capacity(256 * 1024, file.take(limit.saturating_sub(from)));
        let mut line = Vec::new();
        let mut offset = from;
        loop {
            line.clear();
            let len = reader.read_until(b'\n', &mut line)? as u64;
            if len == 0 || line.last() != Some(&b'\n') {
                return Ok(());
            }
            visit(
                Location {
                    segment,
                    offset,
                    len,
                },
                &line[..line.len() - 1],
            );
            offset += len;
        }
    }

    /// Reads the lines at `locations` (without their newlines), opening each segment
    /// once.
    pub fn read_each(
        &self,
        locations: impl IntoIterator<Item = Location>,
        mut visit: impl FnMut(Location, &[u8]),
    ) -> io::Result<()> {
        let mut files: BTreeMap<u64, File> = BTreeMap::new();
        let mut line = Vec::new();
        for at in locations {
            let file = match files.entry(at.segment) {
                std::collections::btree_map::Entry::Occupied(file) => file.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    match File::open(self.path(at.segment)) {
                        Ok(file) => slot.insert(file),
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(err),
                    }
                }
            };
            line.resize(at.len as usize, 0);
            file.read_exact_at(&mut line, at.offset)?;
            if line.last() == Some(&b'\n') {
                visit(at, &line[..line.len() - 1]);
            }
        }
        Ok(())
    }

    /// Cuts `segment` to its first `len` bytes (recovery after a crash).
    pub fn truncate(&self, segment: u64, len: u64) -> io::Result<()> {
        let mut writer = self.writer();
        writer.let_go(segment);
        match OpenOptions::new().write(true).open(self.path(segment)) {
            Ok(file) if file.metadata()?.len() > len => {
                file.set_len(len)?;
                file.sync_data()
            }
            Ok(_) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The length of `segment` on disk (0 when it does not exist).
    pub fn len_on_disk(&self, segment: u64) -> io::Result<u64> {
        match fs::metadata(self.path(segment)) {
            Ok(metadata) => Ok(metadata.len()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(err) => Err(err),
        }
    }

    /// Deletes `segment`.
    pub fn remove(&self, segment: u64) -> io::Result<()> {
        let mut writer = self.writer();
        writer.let_go(segment);
        match fs::remove_file(self.path(segment)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_where_they_were_appended() {
        let dir = tempfile::tempdir().expect("dir");
        let log = WindowLog::open(dir.path()).expect("log");
        let first = log.append(1_000, b"{\"a\":1}").expect("append");
        let second = log.append(1_001, b"{\"b\":2}").expect("append");
        let later = log
            .append(1_000 + SEGMENT_SECONDS, b"{\"c\":3}")
            .expect("append");
        assert_eq!(first.segment, second.segment);
        assert_eq!(second.offset, first.len);
        assert_ne!(later.segment, first.segment);
        log.sync().expect("sync");

        let mut lines = Vec::new();
        log.for_each_line(first.segment, 0, |at, line| lines.push((at, line.to_vec())))
            .expect("scan");
        assert_eq!(
            lines,
            vec![
                (first, b"{\"a\":1}".to_vec()),
                (second, b"{\"b\":2}".to_vec())
            ]
        );
        let mut from_second = Vec::new();
        log.for_each_line(first.segment, second.offset, |at, _| from_second.push(at))
            .expect("scan");
        assert_eq!(from_second, vec![second]);
        let mut read = Vec::new();
        log.read_each([later, first], |_, line| read.push(line.to_vec()))
            .expect("read");
        assert_eq!(read, vec![b"{\"c\":3}".to_vec(), b"{\"a\":1}".to_vec()]);
        assert_eq!(
            log.segments().expect("segments"),
            vec![first.segment, later.segment]
        );
    }

    #[test]
    fn a_torn_last_line_is_not_read_and_truncate_cuts_it() {
        let dir = tempfile::tempdir().expect("dir");
        let log = WindowLog::open(dir.path()).expect("log");
        let whole = log.append(5_000, b"{\"whole\":true}").expect("append");
        let path = dir.path().join(format!("{:010}.jsonl", whole.segment));
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"torn\":").expect("write");
        drop(file);

        let reopened = WindowLog::open(dir.path()).expect("log");
        let mut lines = 0;
        reopened
            .for_each_line(whole.segment, 0, |_, _| lines += 1)
            .expect("scan");
        assert_eq!(lines, 1);
        reopened
            .truncate(whole.segment, whole.len)
            .expect("truncate");
        assert_eq!(reopened.len_on_disk(whole.segment).expect("len"), whole.len);
        let next = reopened.append(5_001, b"{\"next\":1}").expect("append");
        assert_eq!(next.offset, whole.len);
    }

    #[test]
    fn undo_takes_back_the_last_line_and_remove_deletes_the_segment() {
        let dir = tempfile::tempdir().expect("dir");
        let log = WindowLog::open(dir.path()).expect("log");
        let kept = log.append(7_000, b"1").expect("append");
        let taken = log.append(7_000, b"2").expect("append");
        log.undo(taken).expect("undo");
        assert_eq!(log.len_on_disk(kept.segment).expect("len"), kept.len);
        log.remove(kept.segment).expect("remove");
        assert!(log.segments().expect("segments").is_empty());
        assert_eq!(log.append(7_000, b"3").expect("append").offset, 0);
    }
}
