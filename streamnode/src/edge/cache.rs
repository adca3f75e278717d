//! An edge's cache: objects by path (tokens are never part of the key), bounded by bytes,
//! least recently used first out. A miss starts one fetch; whoever asks for the object while
//! it is being fetched reads that fetch ([`Fill`]), never a second one. A live playlist stays
//! fresh for its TTL; a segment never changes, so once whole it is served until evicted.
//! Only whole 200 answers are kept: a 404 for a segment not published yet is asked again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use lru::LruCache;

use super::fill::{Fill, Head, Progress};

/// What is cached of one path.
#[derive(Debug, Default)]
struct Entry {
    /// The last whole object.
    current: Option<Arc<Object>>,
    /// A fetch under way, and when it began.
    pending: Option<(Arc<Fill>, Instant)>,
}

/// A whole object, in one piece: served as it is, with its length.
#[derive(Debug)]
pub struct Object {
    pub head: Head,
    pub body: Bytes,
    /// When its fetch began.
    pub fetched: Instant,
    /// How long it is served without asking the origin again; `None`: until evicted.
    pub ttl: Option<Duration>,
}

impl Object {
    fn fresh(&self, now: Instant) -> bool {
        self.ttl
            .is_none_or(|ttl| now.saturating_duration_since(self.fetched) < ttl)
    }
}

/// How a request is answered.
pub enum Lookup {
    /// From the cache.
    Hit(Arc<Object>),
    /// From the fetch under way; `stale` if the fetch fails.
    Coalesced {
        fill: Arc<Fill>,
        stale: Option<Arc<Object>>,
    },
    /// From a fetch the caller must start now into `fill`; `stale` if it fails.
    Miss {
        fill: Arc<Fill>,
        stale: Option<Arc<Object>>,
    },
}

/// The cache.
pub struct Cache {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    entries: LruCache<String, Entry>,
    /// Bytes of the whole objects held.
    bytes: usize,
}

impl Cache {
    /// A cache of at most `capacity` bytes of whole objects.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
            capacity,
        }
    }

    /// How `path` is answered now; a miss registers the fetch the caller then starts, so
    /// that whoever asks next joins it.
    pub fn lookup(&self, path: &str, now: Instant) -> Lookup {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner
            .entries
            .get_or_insert_mut(path.to_owned(), Entry::default);
        if let Some(current) = &entry.current
            && current.fresh(now)
        {
            return Lookup::Hit(current.clone());
        }
        let stale = entry.current.clone();
        if let Some((fill, _)) = &entry.pending {
            return Lookup::Coalesced {
                fill: fill.clone(),
                stale,
            };
        }
        let fill = Arc::new(Fill::default());
        entry.pending = Some((fill.clone(), now));
        Lookup::Miss { fill, stale }
    }

    /// The fetch for `path` into `fill` ended: a whole 200 becomes the cached object (fresh
    /// for `ttl`), anything else is forgotten (the previous object, if any, stays). Returns
    /// the segments (objects without a TTL) evicted to make room, for a disk tier to keep.
    pub fn finished(
        &self,
        path: &str,
        fill: &Arc<Fill>,
        ttl: Option<Duration>,
    ) -> Vec<(String, Arc<Object>)> {
        let mut evicted = Vec::new();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = inner.entries.get_mut(path) else {
            return evicted;
        };
        if !entry
            .pending
            .as_ref()
            .is_some_and(|(p, _)| Arc::ptr_eq(p, fill))
        {
            return evicted;
        }
        let pending = entry.pending.take();
        let mut freed = 0;
        let mut added = 0;
        if let (Progress::Done(head), Some((_, fetched))) = (fill.progress(), pending)
            && head.status == 200
        {
            // One copy into one piece, once: every hit after is that piece, not the chunks.
            let body = fill.bytes();
            added = body.len();
            let object = Arc::new(Object {
                head,
                body,
                fetched,
                ttl,
            });
            freed = entry
                .current
                .replace(object)
                .map_or(0, |old| old.body.len());
        }
        let empty = entry.current.is_none() && entry.pending.is_none();
        if empty {
            inner.entries.pop(path);
        }
        inner.bytes = inner.bytes + added - freed;
        // Least recently used out until the whole objects fit (objects being fetched are not
        // counted: their readers hold them).
        while inner.bytes > self.capacity {
            let Some((key, old)) = inner.entries.pop_lru() else {
                break;
            };
            if let Some(object) = old.current {
                inner.bytes -= object.body.len();
                if object.ttl.is_none() {
                    evicted.push((key, object));
                }
            }
        }
        evicted
    }

    /// (objects, bytes) held.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.entries.len(), inner.bytes)
    }
}

/// Bytes in `n` MiB.
pub fn mib(n: u32) -> usize {
    n as usize * 1024 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(fill: &Fill, status: u16, body: &[u8]) {
        fill.head(Head {
            status,
            content_type: None,
            length: None,
        });
        fill.push(Bytes::copy_from_slice(body));
        fill.done();
    }

    #[test]
    fn concurrent_misses_share_one_fetch_and_only_whole_200s_are_kept() {
        let cache = Cache::new(1000);
        let now = Instant::now();
        let Lookup::Miss { fill, stale: None } = cache.lookup("/news/seg1.ts", now) else {
            panic!("first ask: a miss");
        };
        let Lookup::Coalesced { fill: joined, .. } = cache.lookup("/news/seg1.ts", now) else {
            panic!("second ask while fetching: joins the fetch");
        };
        assert!(Arc::ptr_eq(&fill, &joined));
        complete(&fill, 200, b"segment");
        cache.finished("/news/seg1.ts", &fill, None);
        let later = now + Duration::from_secs(3600);
        assert!(matches!(
            cache.lookup("/news/seg1.ts", later),
            Lookup::Hit(_)
        ));
        assert_eq!(cache.size(), (1, 7));

        // A segment the origin has not published yet: asked again next time.
        let Lookup::Miss { fill, .. } = cache.lookup("/news/seg2.ts", now) else {
            panic!()
        };
        complete(&fill, 404, b"not yet");
        cache.finished("/news/seg2.ts", &fill, None);
        assert!(matches!(
            cache.lookup("/news/seg2.ts", now),
            Lookup::Miss { .. }
        ));
    }

    #[test]
    fn a_playlist_expires_and_its_last_copy_is_kept_for_a_failed_refresh() {
        let cache = Cache::new(1000);
        let now = Instant::now();
        let Lookup::Miss { fill, .. } = cache.lookup("/news/index.m3u8", now) else {
            panic!()
        };
        complete(&fill, 200, b"#EXTM3U 1");
        cache.finished("/news/index.m3u8", &fill, Some(Duration::from_secs(1)));
        assert!(matches!(
            cache.lookup("/news/index.m3u8", now),
            Lookup::Hit(_)
        ));
        let after = now + Duration::from_secs(2);
        let Lookup::Miss {
            fill,
            stale: Some(stale),
        } = cache.lookup("/news/index.m3u8", after)
        else {
            panic!("expired: fetched again, the old copy offered")
        };
        assert_eq!(&stale.body[..], b"#EXTM3U 1");
        fill.fail("origin down".into());
        cache.finished("/news/index.m3u8", &fill, Some(Duration::from_secs(1)));
        let Lookup::Miss { stale: Some(_), .. } = cache.lookup("/news/index.m3u8", after) else {
            panic!("the old copy is still there")
        };
    }

    #[test]
    fn the_least_recently_used_objects_leave_to_keep_the_bound() {
        let cache = Cache::new(25);
        let now = Instant::now();
        for i in 0..10 {
            let path = format!("/news/seg{i}.ts");
            let Lookup::Miss { fill, .. } = cache.lookup(&path, now) else {
                panic!()
            };
            complete(&fill, 200, &[0u8; 10]);
            let evicted = cache.finished(&path, &fill, None);
            // What leaves is handed back whole, for the disk tier: the one before this, from
            // the third on (seg0 is kept in use).
            let names: Vec<&str> = evicted.iter().map(|(p, _)| p.as_str()).collect();
            match i {
                0 | 1 => assert!(names.is_empty(), "{names:?}"),
                _ => assert_eq!(names, [format!("/news/seg{}.ts", i - 1)], "{i}"),
            }
            assert!(evicted.iter().all(|(_, o)| o.body.len() == 10));
            // The first segment stays in use.
            assert!(matches!(cache.lookup("/news/seg0.ts", now), Lookup::Hit(_)));
            let (_, bytes) = cache.size();
            assert!(bytes <= 25, "{bytes}");
        }
        assert_eq!(cache.size(), (2, 20));
        assert!(matches!(cache.lookup("/news/seg9.ts", now), Lookup::Hit(_)));
        assert!(matches!(
            cache.lookup("/news/seg5.ts", now),
            Lookup::Miss { .. }
        ));
    }
}
