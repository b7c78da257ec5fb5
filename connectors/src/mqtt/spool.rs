//! The MQTT connector's durable buffer: messages taken from the broker wait here, on disk, until
//! the run that stores them has committed.
//!
//! Why a spool and not "acknowledge after the table commit": an MQTT broker sends a client only
//! a small window of unacknowledged QoS 1 messages (Mosquitto: 20), so holding acknowledgements
//! for a whole run would cap every run at that window. Instead a message is acknowledged to the
//! broker only once it is fsynced here, and it leaves the spool only once the hub committed the
//! run that carried it (the checkpoint, the highest sequence committed, comes back in the next
//! run's `ReadContext`). Between the broker and the table a message is always in one durable
//! place or both, never in neither.
//!
//! Layout: one segment file per drain, `open-<first>.jsonl` while it is written, renamed to
//! `<first>-<last>.jsonl` once complete. A line is `{"seq", "topic", "received_at", "text" |
//! "base64"}`. After a crash, an `open-` segment is closed on the next start: a torn last line
//! is cut off (that message was never acknowledged, so the broker sends it again).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// One message as kept in the spool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpooledMessage {
    pub seq: u64,
    pub topic: String,
    /// RFC 3339, when the hub received it.
    pub received_at: String,
    /// The payload when it is UTF-8 (almost always: JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The payload when it is not UTF-8, so that nothing is lost on the way to quarantine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// The size of a payload over `max_payload_bytes`, which is not kept (only reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversized: Option<u64>,
}

impl SpooledMessage {
    pub fn new(seq: u64, topic: &str, received_at: String, payload: &[u8]) -> Self {
        let (text, base64) = match std::str::from_utf8(payload) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(payload)),
            ),
        };
        SpooledMessage {
            seq,
            topic: topic.to_string(),
            received_at,
            text,
            base64,
            oversized: None,
        }
    }

    /// A message too large to keep: only its size is spooled, for the quarantine to show.
    pub fn oversized(seq: u64, topic: &str, received_at: String, size: usize) -> Self {
        SpooledMessage {
            seq,
            topic: topic.to_string(),
            received_at,
            text: None,
            base64: None,
            oversized: Some(size as u64),
        }
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first: u64,
    last: u64,
}

pub struct Spool {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Held while the spool is open: a second process (another hub on the same data
    /// directory, or `iochub run` beside a daemon it could not reach) must not append to the
    /// same segment or take a live one for a crashed one.
    _lock: File,
}

fn io_error(path: &Path, source: std::io::Error) -> ConnectorError {
    ConnectorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Opens (creating) the spool folder, closes a segment left open by a crash, and forgets
    /// the segments whose messages are all committed (`committed` = highest committed seq).
    pub fn open(dir: &Path, committed: u64) -> Result<Spool, ConnectorError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        if let Err(e) = lock.try_lock() {
            let source = match e {
                std::fs::TryLockError::WouldBlock => std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "another process is reading this MQTT source (its spool is locked); try again when it is done",
                ),
                std::fs::TryLockError::Error(e) => e,
            };
            return Err(io_error(&lock_path, source));
        }
        let mut segments = Vec::new();
        let entries = fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| io_error(dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(first) = name
                .strip_prefix("open-")
                .and_then(|n| n.strip_suffix(".jsonl"))
            {
                let first: u64 = first.parse().unwrap_or(0);
                if let Some(segment) = close_torn_segment(&path, first)? {
                    segments.push(segment);
                }
            } else if let Some((first, last)) = name
                .strip_suffix(".jsonl")
                .and_then(|n| n.split_once('-'))
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            {
                segments.push(Segment { path, first, last });
            }
        }
        segments.sort_by_key(|s| s.first);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            segments,
            _lock: lock,
        };
        spool.forget_committed(committed)?;
        Ok(spool)
    }

    fn forget_committed(&mut self, committed: u64) -> Result<(), ConnectorError> {
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.segments)
            .into_iter()
            .partition(|s| s.last <= committed);
        for segment in done {
            fs::remove_file(&segment.path).map_err(|e| io_error(&segment.path, e))?;
        }
        self.segments = kept;
        Ok(())
    }

    /// The sequence number the next message gets: after everything spooled and committed.
    pub fn next_seq(&self, committed: u64) -> u64 {
        self.segments
            .iter()
            .map(|s| s.last)
            .max()
            .unwrap_or(0)
            .max(committed)
            + 1
    }

    /// Starts a segment for one drain of the broker.
    pub fn writer(&self, first: u64) -> Result<SegmentWriter, ConnectorError> {
        let path = self.dir.join(format!("open-{first:020}.jsonl"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        // The new file's name must be durable before anything in it is acknowledged.
        sync_dir(&self.dir);
        Ok(SegmentWriter {
            path,
            first,
            written: None,
            synced: None,
            written_len: 0,
            synced_len: 0,
            out: BufWriter::new(file),
        })
    }

    pub fn add_segment(&mut self, closed: Option<(PathBuf, u64, u64)>) {
        if let Some((path, first, last)) = closed {
            self.segments.push(Segment { path, first, last });
            self.segments.sort_by_key(|s| s.first);
        }
    }

    /// Paths of the segments holding messages after `committed`, in order.
    pub fn pending_segments(&self, committed: u64) -> Vec<PathBuf> {
        self.segments
            .iter()
            .filter(|s| s.last > committed)
            .map(|s| s.path.clone())
            .collect()
    }
}

/// Reads a closed segment's messages in order (streaming, line by line).
pub fn read_segment(
    path: &Path,
) -> Result<impl Iterator<Item = Result<SpooledMessage, ConnectorError>>, ConnectorError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let owned = path.to_path_buf();
    Ok(BufReader::new(file).lines().map(move |line| {
        let line = line.map_err(|e| io_error(&owned, e))?;
        serde_json::from_str(&line).map_err(|e| ConnectorError::Io {
            path: owned.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }))
}

/// Closes a segment a crash left open: keeps its complete lines, renames it. `None` when it
/// held nothing complete (it is removed).
fn close_torn_segment(path: &Path, first: u64) -> Result<Option<Segment>, ConnectorError> {
    let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
    let mut good = 0usize;
    let mut last = None;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            // The write the crash interrupted: never acknowledged, the broker sends it again.
            break;
        }
        let message = serde_json::from_slice::<SpooledMessage>(line).map_err(|e| {
            // A complete line that does not read is damage, not a torn write: cutting there
            // would drop the acknowledged messages after it.
            io_error(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("damaged spool line at byte {good}: {e}"),
                ),
            )
        })?;
        good += line.len();
        last = Some(message.seq);
    }
    let Some(last) = last else {
        fs::remove_file(path).map_err(|e| io_error(path, e))?;
        return Ok(None);
    };
    if good < bytes.len() {
        tracing::warn!(path = %path.display(), cut = bytes.len() - good, "cut a torn line off the MQTT spool; the broker sends that message again");
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        file.set_len(good as u64).map_err(|e| io_error(path, e))?;
        file.sync_all().map_err(|e| io_error(path, e))?;
    }
    let closed = path.with_file_name(format!("{first:020}-{last:020}.jsonl"));
    fs::rename(path, &closed).map_err(|e| io_error(path, e))?;
    Ok(Some(Segment {
        path: closed,
        first,
        last,
    }))
}

pub struct SegmentWriter {
    path: PathBuf,
    first: u64,
    written: Option<u64>,
    synced: Option<u64>,
    written_len: u64,
    synced_len: u64,
    out: BufWriter<File>,
}

impl SegmentWriter {
    /// The sequence number of the segment's first message.
    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn append(&mut self, message: &SpooledMessage) -> Result<(), ConnectorError> {
        let mut line = serde_json::to_vec(message).map_err(|e| ConnectorError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|e| io_error(&self.path, e))?;
        self.written = Some(message.seq);
        self.written_len += line.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable; only then may it be acknowledged.
    pub fn sync(&mut self) -> Result<(), ConnectorError> {
        self.out.flush().map_err(|e| io_error(&self.path, e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| io_error(&self.path, e))?;
        self.synced = self.written;
        self.synced_len = self.written_len;
        Ok(())
    }

    /// Closes the segment: `(path, first, last)` of what it holds, or `None` if empty.
    pub fn close(mut self) -> Result<Option<(PathBuf, u64, u64)>, ConnectorError> {
        self.sync()?;
        self.finish()
    }

    /// Closes the segment after a failure: what was appended but not synced was never
    /// acknowledged (the broker sends it again), so it is cut off rather than kept twice.
    pub fn abort(self) -> Result<Option<(PathBuf, u64, u64)>, ConnectorError> {
        let SegmentWriter {
            path,
            first,
            synced,
            synced_len,
            out,
            ..
        } = self;
        // `into_parts` hands the file back without writing the unsynced buffer.
        let (file, _unwritten) = out.into_parts();
        file.set_len(synced_len).map_err(|e| io_error(&path, e))?;
        file.sync_all().map_err(|e| io_error(&path, e))?;
        SegmentWriter {
            path,
            first,
            written: synced,
            synced,
            written_len: synced_len,
            synced_len,
            out: BufWriter::new(file),
        }
        .finish()
    }

    fn finish(self) -> Result<Option<(PathBuf, u64, u64)>, ConnectorError> {
        let Some(last) = self.synced else {
            fs::remove_file(&self.path).map_err(|e| io_error(&self.path, e))?;
            return Ok(None);
        };
        let closed = self
            .path
            .with_file_name(format!("{:020}-{last:020}.jsonl", self.first));
        fs::rename(&self.path, &closed).map_err(|e| io_error(&self.path, e))?;
        if let Some(dir) = closed.parent() {
            // The rename itself must survive a power cut too.
            sync_dir(dir);
        }
        Ok(Some((closed, self.first, last)))
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_drain_keeps_only_what_was_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 0).unwrap();
        let mut w = spool.writer(1).unwrap();
        w.append(&message(1)).unwrap();
        w.sync().unwrap();
        w.append(&message(2)).unwrap(); // never synced, so never acknowledged
        spool.add_segment(w.abort().unwrap());
        let pending = spool.pending_segments(0);
        let seqs: Vec<u64> = read_segment(&pending[0])
            .unwrap()
            .map(|m| m.unwrap().seq)
            .collect();
        assert_eq!(seqs, vec![1]);
        assert_eq!(spool.next_seq(0), 2);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_spool() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), 0).unwrap();
        let second = Spool::open(dir.path(), 0).err().expect("locked");
        assert!(second.to_string().contains("spool is locked"), "{second}");
    }

    #[test]
    fn damage_inside_a_segment_is_an_error_not_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("open-{:020}.jsonl", 1));
        let good = serde_json::to_string(&message(2)).unwrap();
        fs::write(&path, format!("{{damaged}}\n{good}\n")).unwrap();
        let error = Spool::open(dir.path(), 0).err().expect("refused");
        assert!(error.to_string().contains("damaged spool line"), "{error}");
        assert_eq!(
            fs::read_to_string(&path).unwrap().lines().count(),
            2,
            "nothing cut"
        );
    }

    fn message(seq: u64) -> SpooledMessage {
        SpooledMessage::new(seq, "t", "2025-06-02T00:00:00Z".into(), b"{\"a\":1}")
    }

    #[test]
    fn committed_segments_are_forgotten_and_numbers_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 0).unwrap();
        let mut w = spool.writer(1).unwrap();
        w.append(&message(1)).unwrap();
        w.append(&message(2)).unwrap();
        spool.add_segment(w.close().unwrap());
        let mut w = spool.writer(3).unwrap();
        w.append(&message(3)).unwrap();
        spool.add_segment(w.close().unwrap());
        assert_eq!(spool.pending_segments(0).len(), 2);
        assert_eq!(spool.pending_segments(2).len(), 1);
        drop(spool);

        let spool = Spool::open(dir.path(), 2).unwrap();
        assert_eq!(spool.pending_segments(2).len(), 1);
        assert_eq!(spool.next_seq(2), 4);
        let segments = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "jsonl")
            })
            .count();
        assert_eq!(segments, 1);
        drop(spool);
        // Everything committed and the spool emptied: numbering continues after the commit.
        let spool = Spool::open(dir.path(), 3).unwrap();
        assert_eq!(spool.next_seq(3), 4);
        assert!(spool.pending_segments(3).is_empty());
    }

    #[test]
    fn a_torn_segment_keeps_its_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("open-{:020}.jsonl", 5));
        let mut text = serde_json::to_string(&message(5)).unwrap();
        text.push('\n');
        text.push_str(&serde_json::to_string(&message(6)).unwrap());
        text.push('\n');
        text.push_str("{\"seq\":7,\"topic\":\"t\",\"rec"); // the crash came here
        fs::write(&path, text).unwrap();
        let spool = Spool::open(dir.path(), 0).unwrap();
        let pending = spool.pending_segments(0);
        assert_eq!(pending.len(), 1);
        let seqs: Vec<u64> = read_segment(&pending[0])
            .unwrap()
            .map(|m| m.unwrap().seq)
            .collect();
        assert_eq!(seqs, vec![5, 6]);
        assert_eq!(spool.next_seq(0), 7);
    }

    #[test]
    fn binary_payloads_are_kept() {
        let m = SpooledMessage::new(1, "t", "x".into(), &[0xff, 0x00, 0x41]);
        assert_eq!(m.text, None);
        assert_eq!(m.base64.as_deref(), Some("/wBB"));
    }
}
