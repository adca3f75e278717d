//! The messages, and how they travel: one JSON object per line.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::RouteAttrs;

/// Longest request line accepted; anything longer is refused, not buffered.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// What can be asked of the speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// Announce (or renew) prefixes sharing the same attributes.
    Announce {
        prefixes: Vec<IpNet>,
        #[serde(default)]
        attrs: RouteAttrs,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// Lease in milliseconds; the route is withdrawn when it runs out unless renewed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease_ms: Option<u64>,
    },
    Withdraw {
        prefixes: Vec<IpNet>,
    },
    /// An operator's drain: GRACEFUL_SHUTDOWN now, withdrawn after the delay (the site's
    /// `drain_delay` by default), and so until `undrain`, whatever healthd renews.
    Drain {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefixes: Option<Vec<IpNet>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_ms: Option<u64>,
        /// Who asked, shown by `show routes`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Ends an operator's drain of these prefixes (all when absent).
    Undrain {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefixes: Option<Vec<IpNet>>,
    },
    /// Every route the client wants is announced: End-of-RIB may go out after a restart.
    Synced,
    Neighbors,
    /// The originated-route table: streamed, one route per line.
    Routes,
    /// What one peer has been sent (its Adj-RIB-Out): streamed, one route per line.
    Advertised {
        peer: String,
    },
    /// What one peer sent us (its Adj-RIB-In; import must be enabled): streamed.
    Received {
        peer: String,
    },
    /// Administratively stop or start a peer.
    PeerDown {
        peer: String,
        #[serde(default)]
        reason: String,
    },
    PeerUp {
        peer: String,
    },
    /// Start the binary at the speaker's path as its replacement (an upgrade): answered once
    /// the new process serves, or why not.
    Replace,
}

impl Op {
    /// Whether the answer is a stream of route lines ([`Reply::Route`] or
    /// [`Reply::PeerRoute`]) closed by [`Reply::RoutesEnd`].
    pub fn streams_routes(&self) -> bool {
        matches!(
            self,
            Op::Routes | Op::Advertised { .. } | Op::Received { .. }
        )
    }
}

/// What a change did, for logs and the control API's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Added,
    Updated,
    /// Same attributes; only the lease moved.
    Renewed,
    Removed,
    Unknown,
}

/// The answer to a request (one line; a route stream is several).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    Changed {
        change: Change,
        routes: usize,
    },
    Drained {
        routes: usize,
    },
    Undrained {
        routes: usize,
    },
    Neighbors(Vec<serde_json::Value>),
    /// One route of the originated table's stream.
    Route(RouteEntry),
    /// One route of a peer's stream.
    PeerRoute(ShownRoute),
    /// The end of a route stream, with how many routes it had.
    RoutesEnd {
        routes: usize,
    },
    /// The replacement serves: its process id, and the time from the request.
    Replaced {
        pid: u32,
        ms: u64,
    },
    Error(String),
}

/// One originated route as listed by the control API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub prefix: IpNet,
    pub attrs: RouteAttrs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Milliseconds until the lease runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_left_ms: Option<u64>,
    /// Under an operator's drain: GRACEFUL_SHUTDOWN until it is withdrawn.
    #[serde(default)]
    pub draining: bool,
    /// An operator's drain withdrew it (it stays in the table until `undrain`).
    #[serde(default)]
    pub withdrawn_by_drain: bool,
    /// Who drained it, and when (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_at: Option<u64>,
}

/// A route as the CLI and the control API show it, sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownRoute {
    pub prefix: String,
    pub origin: String,
    pub as_path: String,
    pub next_hop: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large_communities: Vec<String>,
}

/// ORIGIN code as BIRD and FRR print it.
pub fn origin_name(code: u8) -> String {
    match code {
        0 => "IGP",
        1 => "EGP",
        _ => "incomplete",
    }
    .to_owned()
}

/// A request line: the operation and, on TCP, the token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(flatten)]
    pub op: Op,
}

/// Reads the next request; `Ok(None)` at the end of the stream, `Err(reply)` for a line that
/// must be answered with an error (too long: the connection should then close; not JSON).
pub async fn read_request<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut String,
) -> std::io::Result<Option<Result<Envelope, (Reply, bool)>>> {
    loop {
        line.clear();
        let n = (&mut *reader).take(MAX_LINE as u64).read_line(line).await?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with('\n') && line.len() >= MAX_LINE {
            let refused = Reply::Error(format!("request longer than {MAX_LINE} bytes"));
            return Ok(Some(Err((refused, true))));
        }
        if line.trim().is_empty() {
            continue;
        }
        return Ok(Some(
            serde_json::from_str::<Envelope>(line)
                .map_err(|e| (Reply::Error(format!("bad request: {e}")), false)),
        ));
    }
}

/// Writes one reply line.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    write: &mut W,
    reply: &Reply,
) -> std::io::Result<()> {
    let mut text =
        serde_json::to_string(reply).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let line = r#"{"op":"announce","prefixes":["198.51.100.0/24"],"service":"live","lease_ms":3000,"attrs":{"communities":["65000:100"],"prepend":1}}"#;
        let e: Envelope = serde_json::from_str(line).unwrap();
        assert!(matches!(
            e.op,
            Op::Announce {
                lease_ms: Some(3000),
                ..
            }
        ));
        let drain: Envelope =
            serde_json::from_str(r#"{"op":"drain","by":"alice","token":"t"}"#).unwrap();
        assert_eq!(drain.token.as_deref(), Some("t"));
        assert!(matches!(drain.op, Op::Drain { by: Some(ref b), .. } if b == "alice"));
        let reply = serde_json::to_string(&Reply::Changed {
            change: Change::Added,
            routes: 1,
        })
        .unwrap();
        assert_eq!(reply, r#"{"changed":{"change":"added","routes":1}}"#);
    }

    #[tokio::test]
    async fn an_over_long_line_is_refused_not_buffered_whole() {
        let big = vec![b'x'; MAX_LINE + 10];
        let mut reader = tokio::io::BufReader::new(&big[..]);
        let mut line = String::new();
        let read = read_request(&mut reader, &mut line).await.unwrap();
        assert!(matches!(read, Some(Err((Reply::Error(_), true)))));
    }
}
