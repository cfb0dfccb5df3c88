//! The log file, rotated by size: `sombrero.log` is the current file; past [`MAX_LOG_BYTES`]
//! it becomes `sombrero.log.1` (older ones shift up to `.KEEP_LOGS`, the oldest is removed),
//! so no client, however many refusals it causes, can fill the disk through the log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Size at which the current log file is rotated.
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept besides the current one.
pub const KEEP_LOGS: usize = 5;
/// The longest log record written; a longer one is cut here and marked.
pub const MAX_RECORD: usize = 16 * 1024;

/// A log file that rotates itself; a `tracing` writer.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max: u64,
    keep: usize,
    file: Mutex<Option<(File, u64)>>,
}

impl RotatingLog {
    /// `dir/name`, rotated past `max` bytes, keeping `keep` old files.
    pub fn new(dir: &Path, name: &str, max: u64, keep: usize) -> RotatingLog {
        RotatingLog {
            path: dir.join(name),
            max,
            keep,
            file: Mutex::new(None),
        }
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn open(&self) -> std::io::Result<(File, u64)> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        let len = f.metadata()?.len();
        Ok((f, len))
    }

    /// Shifts `.N` to `.N+1` (dropping the last), the current file to `.1`.
    fn rotate(&self) {
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        if self.keep > 0 {
            let _ = std::fs::rename(&self.path, self.rotated(1));
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Write for &RotatingLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(_, len)| *len >= self.max) {
            *slot = None;
            self.rotate();
        }
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let Some((file, len)) = slot.as_mut() else {
            return Ok(buf.len());
        };
        if buf.len() > MAX_RECORD {
            const CUT: &[u8] = b" [record truncated]\n";
            file.write_all(&buf[..MAX_RECORD])?;
            file.write_all(CUT)?;
            *len += (MAX_RECORD + CUT.len()) as u64;
        } else {
            file.write_all(buf)?;
            *len += buf.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingLog {
    type Writer = &'a RotatingLog;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_the_size_and_keeps_only_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let log = RotatingLog::new(dir.path(), "s.log", 100, 2);
        for _ in 0..50 {
            (&log).write_all(&[b'x'; 40]).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["s.log", "s.log.1", "s.log.2"]);
        for n in &names {
            assert!(std::fs::metadata(dir.path().join(n)).unwrap().len() <= 120);
        }
    }

    #[test]
    fn a_huge_record_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = RotatingLog::new(dir.path(), "s.log", MAX_LOG_BYTES, 1);
        (&log).write_all(&vec![b'y'; 10 * MAX_RECORD]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("s.log")).unwrap();
        assert!(text.len() < MAX_RECORD + 64, "{}", text.len());
        assert!(text.ends_with("[record truncated]\n"));
    }
}
