//! An edge's second tier: segments the memory tier lets go are written to files in a directory
//! of the edge's own, bounded by bytes (least recently used out), and read back on a memory
//! miss instead of asking the origin. Playlists never go there: they are stale within a second.
//!
//! The index lives in memory, so files of an earlier run are removed at start rather than
//! trusted. A segment handed over is staged at once ([`Disk::stage`]) and served from memory
//! until its file is written ([`Disk::put`]), so it never goes back to the origin meanwhile.
//! `put` and `get` do file I/O: callers run them on blocking threads.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::HeaderValue;
use lru::LruCache;

/// What the tier keeps of one segment beside its bytes.
#[derive(Debug)]
struct Stored {
    /// The number in its file's name.
    file: u64,
    len: usize,
    content_type: Option<HeaderValue>,
}

/// The disk tier.
#[derive(Debug)]
pub struct Disk {
    pid: u32,
    dir: PathBuf,
    capacity: usize,
    inner: Mutex<Inner>,
    /// Segments staged whose file is not written yet.
    writing: Mutex<HashMap<String, (Option<HeaderValue>, Bytes)>>,
    next_file: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    entries: LruCache<String, Stored>,
    bytes: usize,
}

/// Files the tier writes: `edge-PID-N.seg`. Only those are removed at start. The process id
/// keeps a replacement's files apart from those its predecessor still writes while it hands
/// over: neither ever reads the other's bytes as its own.
fn ours(name: &str) -> bool {
    let digits = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("edge-")
        .and_then(|n| {
            n.strip_suffix(".seg")
                .or_else(|| n.strip_suffix(".seg.tmp"))
        })
        .and_then(|n| n.split_once('-'))
        .is_some_and(|(pid, n)| digits(pid) && digits(n))
}

impl Disk {
    /// The tier in `dir` (created if missing), holding at most `capacity` bytes.
    pub fn open(dir: &Path, capacity: usize) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_str().is_some_and(ours) {
                fs::remove_file(entry.path())?;
            }
        }
        // Written and removed once now, so that a directory the edge cannot write to is an
        // error at start, not a tier that silently keeps nothing.
        let pid = std::process::id();
        let probe = dir.join(format!("edge-{pid}-0.seg.tmp"));
        fs::write(&probe, b"")?;
        fs::remove_file(&probe)?;
        Ok(Self {
            pid,
            dir: dir.to_owned(),
            capacity,
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
            writing: Mutex::default(),
            next_file: AtomicU64::new(1),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    fn file(&self, n: u64) -> PathBuf {
        self.dir.join(format!("edge-{}-{n}.seg", self.pid))
    }

    /// Takes `body` for `path` to keep: served by [`Disk::get`] from now on, from memory until
    /// [`Disk::put`] has written it. Does no I/O.
    pub fn stage(&self, path: &str, content_type: Option<HeaderValue>, body: Bytes) {
        let mut writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        writing.insert(path.to_owned(), (content_type, body));
    }

    /// Writes what was staged for `path`, if it is still that `body`.
    pub fn put_staged(&self, path: &str, content_type: Option<HeaderValue>, body: &Bytes) {
        self.put(path, content_type, body);
        let mut writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if writing
            .get(path)
            .is_some_and(|(_, staged)| staged.as_ptr() == body.as_ptr())
        {
            writing.remove(path);
        }
    }

    /// Keeps `body` for `path`, least recently used segments out until the tier fits. A
    /// segment larger than the whole tier is not kept; a write that fails keeps nothing.
    fn put(&self, path: &str, content_type: Option<HeaderValue>, body: &[u8]) {
        if body.len() > self.capacity {
            return;
        }
        // A segment never changes: one read back from here and evicted from memory again is
        // already kept, and only becomes the most recently used.
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if inner.entries.get(path).is_some_and(|s| s.len == body.len()) {
                return;
            }
        }
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        // Written under another name, then renamed: a reader never sees half a file.
        let tmp = self.dir.join(format!("edge-{}-{n}.seg.tmp", self.pid));
        if fs::write(&tmp, body)
            .and_then(|()| fs::rename(&tmp, self.file(n)))
            .is_err()
        {
            let _ = fs::remove_file(&tmp);
            return;
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut gone = Vec::new();
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let stored = Stored {
                file: n,
                len: body.len(),
                content_type,
            };
            if let Some(old) = inner.entries.put(path.to_owned(), stored) {
                inner.bytes -= old.len;
                gone.push(old.file);
            }
            inner.bytes += body.len();
            while inner.bytes > self.capacity {
                let Some((_, old)) = inner.entries.pop_lru() else {
                    break;
                };
                inner.bytes -= old.len;
                gone.push(old.file);
            }
        }
        for file in gone {
            let _ = fs::remove_file(self.file(file));
        }
    }

    /// The segment kept for `path`, if any (and now the most recently used). A file that
    /// cannot be read whole is forgotten.
    pub fn get(&self, path: &str) -> Option<(Option<HeaderValue>, Bytes)> {
        let staged = self
            .writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned();
        if let Some(staged) = staged {
            self.reads.fetch_add(1, Ordering::Relaxed);
            return Some(staged);
        }
        let (file, len, content_type) = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let stored = inner.entries.get(path)?;
            (stored.file, stored.len, stored.content_type.clone())
        };
        match fs::read(self.file(file)) {
            Ok(body) if body.len() == len => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                Some((content_type, Bytes::from(body)))
            }
            _ => {
                let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if inner.entries.peek(path).is_some_and(|s| s.file == file)
                    && let Some(old) = inner.entries.pop(path)
                {
                    inner.bytes -= old.len;
                }
                None
            }
        }
    }

    /// Segments written (not counting those already kept).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// (segments, bytes) kept.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.entries.len(), inner.bytes)
    }

    /// Segments served from the tier.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edge-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn segments_come_back_whole_and_the_least_recently_used_leave_files_and_all() {
        let dir = dir("lru");
        let disk = Disk::open(&dir, 3_000).unwrap();
        let ts = Some(HeaderValue::from_static("video/mp2t"));
        for n in 0..3u8 {
            disk.put(&format!("/news/seg{n}.ts"), ts.clone(), &[n; 1_000]);
        }
        assert_eq!(disk.size(), (3, 3_000));
        // seg0 read: now the most recent; seg1 leaves for seg3.
        let (content_type, body) = disk.get("/news/seg0.ts").unwrap();
        assert_eq!((content_type, &body[..]), (ts.clone(), &[0u8; 1_000][..]));
        disk.put("/news/seg3.ts", ts.clone(), &[3; 1_000]);
        assert!(disk.get("/news/seg1.ts").is_none());
        assert!(disk.get("/news/seg3.ts").is_some());
        assert_eq!(disk.size(), (3, 3_000));
        assert_eq!(files(&dir).len(), 3, "{:?}", files(&dir));
        // Larger than the tier: not kept, nothing else lost.
        disk.put("/news/huge.ts", ts.clone(), &[9; 3_001]);
        assert_eq!(disk.size(), (3, 3_000));
        // Put again as it is (read back, evicted from memory again): not written again.
        let writes = disk.writes();
        disk.put("/news/seg3.ts", ts.clone(), &[3; 1_000]);
        assert_eq!(disk.writes(), writes);
        // The same path with other bytes (a segment cannot change; still, never two files).
        disk.put("/news/seg3.ts", ts, &[4; 500]);
        assert_eq!(disk.size(), (3, 2_500));
        assert_eq!(&disk.get("/news/seg3.ts").unwrap().1[..], &[4u8; 500][..]);
        assert_eq!(files(&dir).len(), 3);
        assert_eq!(disk.reads(), 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_staged_segment_is_served_before_its_file_is_written_and_after() {
        let dir = dir("staged");
        let disk = Disk::open(&dir, 10_000).unwrap();
        let body = Bytes::from(vec![7u8; 1_000]);
        disk.stage("/news/seg7.ts", None, body.clone());
        assert!(files(&dir).is_empty(), "staging writes nothing");
        assert_eq!(disk.get("/news/seg7.ts").unwrap().1, body);
        disk.put_staged("/news/seg7.ts", None, &body);
        assert_eq!(files(&dir).len(), 1);
        assert!(disk.writing.lock().unwrap().is_empty());
        assert_eq!(disk.get("/news/seg7.ts").unwrap().1, body);
        assert_eq!(disk.reads(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_gone_is_a_miss_and_an_earlier_run_s_files_are_removed_but_no_others() {
        let dir = dir("gone");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("edge-41-7.seg"), b"from before").unwrap();
        fs::write(dir.join("edge-41-8.seg.tmp"), b"half").unwrap();
        fs::write(dir.join("edge-7.seg"), b"not of ours").unwrap();
        fs::write(dir.join("notes.txt"), b"the operator's").unwrap();
        let disk = Disk::open(&dir, 10_000).unwrap();
        assert_eq!(files(&dir), ["edge-7.seg", "notes.txt"]);
        disk.put("/news/seg1.ts", None, b"bytes");
        for name in files(&dir).iter().filter(|n| ours(n)) {
            fs::remove_file(dir.join(name)).unwrap();
        }
        assert!(disk.get("/news/seg1.ts").is_none());
        assert_eq!(disk.size(), (0, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_an_error_at_start() {
        let dir = dir("file");
        fs::write(&dir, b"a file, not a directory").unwrap();
        assert!(Disk::open(&dir, 1_000).is_err());
        fs::remove_file(&dir).unwrap();
    }
}
