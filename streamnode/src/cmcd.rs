//! Common Media Client Data (CTA-5004): what players say about their playback on each request,
//! in the `CMCD` query parameter or the `CMCD-Request`, `CMCD-Object`, `CMCD-Status` and
//! `CMCD-Session` headers. Parsed by hand: the grammar is a comma-separated list of
//! `key=value` (a bare key is `true`; strings are quoted, with `\"` and `\\` escapes), and
//! no maintained crate reads it.
//!
//! A malformed list is ignored whole and counted: it is never an error to the player.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The keys the node turns into viewer QoE; others are skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cmcd {
    /// `bl`: buffer length, milliseconds.
    pub buffer_ms: Option<u64>,
    /// `br`: encoded bitrate of the object asked for, kbit/s.
    pub bitrate_kbps: Option<u64>,
    /// `mtp`: throughput the player measured, kbit/s.
    pub throughput_kbps: Option<u64>,
    /// `d`: the object's duration, milliseconds.
    pub duration_ms: Option<u64>,
    /// `su`: the request is part of the start-up (or a seek).
    pub startup: bool,
    /// `bs`: the buffer ran empty since the previous request (a stall).
    pub starved: bool,
    /// `sid`: the playback session.
    pub session: Option<String>,
    /// `cid`: the content.
    pub content: Option<String>,
}

/// Why a CMCD list was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmcdError {
    #[error("CMCD key {0:?} is not lower-case letters and digits")]
    Key(String),
    #[error("CMCD value of {0} is not what the key takes")]
    Value(&'static str),
    #[error("CMCD string not closed")]
    Unclosed,
    #[error("CMCD list longer than {MAX_LEN} bytes")]
    TooLong,
}

/// Longer lists are refused: no player sends more than a few hundred bytes.
const MAX_LEN: usize = 4096;

impl Cmcd {
    /// Reads the lists in `parts` (the query parameter's value, or each header's) into one.
    pub fn parse<'a>(parts: impl IntoIterator<Item = &'a str>) -> Result<Self, CmcdError> {
        let mut c = Self::default();
        for part in parts {
            if part.len() > MAX_LEN {
                return Err(CmcdError::TooLong);
            }
            for (key, value) in Pairs::new(part) {
                let (key, value) = (key?, value);
                c.set(key, value)?;
            }
        }
        Ok(c)
    }

    fn set(&mut self, key: &str, value: Value<'_>) -> Result<(), CmcdError> {
        let number = |name: &'static str| match value {
            Value::Token(t) => t.parse::<u64>().map_err(|_| CmcdError::Value(name)),
            _ => Err(CmcdError::Value(name)),
        };
        let flag = |name: &'static str| match value {
            Value::True => Ok(true),
            Value::Token("true") => Ok(true),
            Value::Token("false") => Ok(false),
            _ => Err(CmcdError::Value(name)),
        };
        let string = |name: &'static str| match &value {
            Value::Quoted(s) => Ok(s.clone()),
            _ => Err(CmcdError::Value(name)),
        };
        match key {
            "bl" => self.buffer_ms = Some(number("bl")?),
            "br" => self.bitrate_kbps = Some(number("br")?),
            "mtp" => self.throughput_kbps = Some(number("mtp")?),
            "d" => self.duration_ms = Some(number("d")?),
            "su" => self.startup = flag("su")?,
            "bs" => self.starved = flag("bs")?,
            "sid" => self.session = Some(string("sid")?),
            "cid" => self.content = Some(string("cid")?),
            _ => {}
        }
        Ok(())
    }
}

/// A value as the list writes it.
#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    /// A bare key.
    True,
    /// A number or token (`ot=v`, `st=l`).
    Token(&'a str),
    Quoted(String),
}

/// The `key=value` pairs of one list, in order.
struct Pairs<'a> {
    rest: &'a str,
}

impl<'a> Pairs<'a> {
    fn new(list: &'a str) -> Self {
        Self { rest: list.trim() }
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (Result<&'a str, CmcdError>, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let key_end = self.rest.find(['=', ',']).unwrap_or(self.rest.len());
        let key = self.rest[..key_end].trim();
        let valid = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let key = if valid {
            Ok(key)
        } else {
            Err(CmcdError::Key(key.chars().take(16).collect()))
        };
        let after = &self.rest[key_end..];
        let (value, rest) = if let Some(v) = after.strip_prefix('=') {
            if let Some(quoted) = v.strip_prefix('"') {
                match unquote(quoted) {
                    Some((s, rest)) => (Value::Quoted(s), rest),
                    None => {
                        self.rest = "";
                        return Some((Err(CmcdError::Unclosed), Value::True));
                    }
                }
            } else {
                let end = v.find(',').unwrap_or(v.len());
                (Value::Token(v[..end].trim()), &v[end..])
            }
        } else {
            (Value::True, after)
        };
        // Past the value: a comma, or the end.
        self.rest = match rest.trim_start().strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.trim().is_empty() => "",
            None => {
                self.rest = "";
                return Some((Err(CmcdError::Value("a list item")), value));
            }
        };
        Some((key, value))
    }
}

/// The string up to its closing quote (escapes resolved), and what follows it.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// Percent-decodes a query parameter's value (`%2C` for `,`, `+` for a space).
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Distinct playback sessions per channel seen within a window, in bounded memory and bounded
/// work per request: while `capacity` sessions are remembered, a new one is counted only once
/// expired ones are swept (at most once a second), so the count is then a floor and a client
/// making up session ids cannot make each request scan the table.
#[derive(Debug)]
pub struct Sessions {
    window: Duration,
    capacity: usize,
    seen: Mutex<Heard>,
}

/// The sessions by (channel, id), when each was last heard; and when expired ones were last
/// swept.
type Heard = (HashMap<(String, String), Instant>, Option<Instant>);

/// How often a full table is swept of expired sessions.
const SWEEP: Duration = Duration::from_secs(1);

impl Sessions {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            seen: Mutex::new((HashMap::new(), None)),
        }
    }

    /// Session `sid` asked for `channel` at `now`.
    pub fn saw(&self, channel: &str, sid: &str, now: Instant) {
        let key = (channel.to_owned(), sid.chars().take(64).collect::<String>());
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (seen, swept) = &mut *guard;
        if seen.len() >= self.capacity && !seen.contains_key(&key) {
            if swept.is_none_or(|at| now.saturating_duration_since(at) >= SWEEP) {
                let window = self.window;
                seen.retain(|_, at| now.saturating_duration_since(*at) < window);
                *swept = Some(now);
            }
            if seen.len() >= self.capacity {
                return;
            }
        }
        seen.insert(key, now);
    }

    /// Sessions per channel seen within the window before `now`.
    pub fn count(&self, now: Instant) -> HashMap<String, u64> {
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        guard
            .0
            .retain(|_, at| now.saturating_duration_since(*at) < window);
        let mut counts = HashMap::new();
        for (channel, _) in guard.0.keys() {
            *counts.entry(channel.clone()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_js_lists_parse() {
        // As hls.js sends them in the query (decoded), and as headers.
        let q = r#"bl=21300,br=3200,bs,cid="faec5fc2-ac30-11ea-bb37-0242ac130002",d=4004,dl=18500,mtp=48100,nor="..%2F300kbps%2Ftrack.m4v",nrr="12323-48763",ot=v,pr=1.08,rtp=12000,sf=h,sid="6e2fb550-c457-11e9-bb97-0800200c9a66",st=v,su,tb=6000"#;
        let c = Cmcd::parse([q]).unwrap();
        assert_eq!(c.buffer_ms, Some(21300));
        assert_eq!(c.bitrate_kbps, Some(3200));
        assert_eq!(c.throughput_kbps, Some(48100));
        assert_eq!(c.duration_ms, Some(4004));
        assert!(c.startup && c.starved);
        assert_eq!(
            c.session.as_deref(),
            Some("6e2fb550-c457-11e9-bb97-0800200c9a66")
        );
        let headers = Cmcd::parse([
            "bl=1200,mtp=25400",
            "br=3200,d=4004,ot=v",
            "bs",
            r#"cid="news",sid="a\"b",sf=h,st=l,v=1"#,
        ])
        .unwrap();
        assert_eq!(headers.buffer_ms, Some(1200));
        assert_eq!(headers.session.as_deref(), Some("a\"b"));
        assert!(headers.starved && !headers.startup);
        assert_eq!(Cmcd::parse([""]).unwrap(), Cmcd::default());
    }

    #[test]
    fn malformed_lists_are_refused_whole() {
        for bad in [
            "bl=abc",
            "bl=-1",
            "su=maybe",
            r#"sid=unquoted"#,
            r#"sid="never closed"#,
            "BL=100",
            "bl=100,,br=1",
            r#"sid="x"junk"#,
            "=5",
        ] {
            assert!(Cmcd::parse([bad]).is_err(), "{bad:?} accepted");
        }
        let long = "bl=1,".repeat(1000);
        assert_eq!(Cmcd::parse([long.as_str()]), Err(CmcdError::TooLong));
    }

    #[test]
    fn the_query_parameter_is_percent_decoded() {
        let q = "foo=1&CMCD=bl%3D300%2Cbr%3D800%2Csid%3D%22s%201%22&x";
        let v = query_value(q, "CMCD").unwrap();
        assert_eq!(v, r#"bl=300,br=800,sid="s 1""#);
        let c = Cmcd::parse([v.as_str()]).unwrap();
        assert_eq!((c.buffer_ms, c.bitrate_kbps), (Some(300), Some(800)));
        assert_eq!(query_value("a=1", "CMCD"), None);
        assert_eq!(percent_decode("%zz%2"), "%zz%2");
    }

    #[test]
    fn sessions_are_counted_per_channel_within_the_window_and_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 3);
        let t = Instant::now();
        s.saw("news", "a", t);
        s.saw("news", "b", t);
        s.saw("news", "a", t + Duration::from_secs(1));
        s.saw("sports", "c", t);
        assert_eq!(s.count(t + Duration::from_secs(2)).get("news"), Some(&2));
        // Full: a new session is not counted while every one remembered is recent...
        s.saw("sports", "d", t + Duration::from_secs(3));
        let counts = s.count(t + Duration::from_secs(3));
        assert_eq!(counts.values().sum::<u64>(), 3);
        assert_eq!(counts.get("sports"), Some(&1));
        // ...and is once old ones expire.
        s.saw("sports", "d", t + Duration::from_secs(61));
        assert_eq!(
            s.count(t + Duration::from_secs(61)).get("sports"),
            Some(&1),
            "only d is recent"
        );
        // Past the window, gone.
        assert!(s.count(t + Duration::from_secs(130)).is_empty());
    }
}
