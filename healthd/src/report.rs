//! What a stream node says about itself in its status document: how loaded it is and whether
//! an operator is draining it. Read beside the health probe; a node that does not publish
//! one (a plain web server) simply reports nothing.

use std::time::Duration;

use serde::Deserialize;

use crate::probe::http;

/// A node's own account of itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeReport {
    /// Egress as a fraction of the configured capacity.
    pub load: f64,
    pub draining: bool,
}

#[derive(Deserialize)]
struct StatusDocument {
    #[serde(default)]
    egress_bps: u64,
    #[serde(default)]
    draining: bool,
    #[serde(default)]
    replaced: bool,
    #[serde(default)]
    channels: Vec<ChannelDocument>,
}

#[derive(Deserialize)]
struct ChannelDocument {
    name: String,
    /// `flowing` or `lost`; absent from nodes that do not say.
    #[serde(default)]
    ingest: Option<String>,
}

/// A status document as a whole: the report, and what it says of each channel's ingest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    pub report: NodeReport,
    /// Channels (`CHANNEL` or `CHANNEL/RENDITION`) whose ingest the node says is lost.
    pub ingest_lost: Vec<String>,
    /// A new process of the node serves in place of the one that sent this (an upgrade): its
    /// status stream ends, and the next connection reaches the new one.
    pub replaced: bool,
}

/// Reads `status_url` (`http://HOST:PORT/PATH` or `https://...`) with the node's probe client.
/// `capacity_mbps` is the deployment's figure for the node, the one steering and spill
/// decisions weigh, not what the node claims.
pub async fn read(
    client: &http::Client,
    status_url: &str,
    capacity_mbps: u32,
    timeout: Duration,
) -> Option<NodeReport> {
    let (base, path) = http::split(status_url)?;
    let fetched = client.get(base, path, timeout).await.ok()?;
    if fetched.status != 200 {
        return None;
    }
    parse(&fetched.body, capacity_mbps)
}

/// Reads a status document's report; `None` when it is not one.
pub fn parse(body: &[u8], capacity_mbps: u32) -> Option<NodeReport> {
    document(body, capacity_mbps).map(|d| d.report)
}

/// Reads a whole status document; `None` when it is not one.
pub fn document(body: &[u8], capacity_mbps: u32) -> Option<Document> {
    let doc: StatusDocument = serde_json::from_slice(body).ok()?;
    let capacity = f64::from(capacity_mbps) * 1e6;
    let load = if capacity > 0.0 {
        doc.egress_bps as f64 / capacity
    } else {
        0.0
    };
    Some(Document {
        report: NodeReport {
            load,
            draining: doc.draining,
        },
        ingest_lost: doc
            .channels
            .into_iter()
            .filter(|c| c.ingest.as_deref() == Some("lost"))
            .map(|c| c.name)
            .collect(),
        replaced: doc.replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_egress_over_the_configured_capacity() {
        let r = parse(
            br#"{"node":"a","egress_bps":250000000,"draining":true,"channels":[]}"#,
            1000,
        );
        assert_eq!(
            r,
            Some(NodeReport {
                load: 0.25,
                draining: true
            })
        );
    }

    #[test]
    fn channels_whose_ingest_is_lost_are_named() {
        let d = document(
            br#"{"draining":false,"channels":[{"name":"news","ingest":"flowing"},{"name":"sports/720p","ingest":"lost"},{"name":"old"}]}"#,
            1000,
        )
        .unwrap();
        assert_eq!(d.ingest_lost, ["sports/720p"]);
    }

    #[test]
    fn anything_but_a_status_document_reports_nothing() {
        assert_eq!(parse(b"<html>", 1000), None);
        assert_eq!(parse(b"[1,2]", 1000), None);
        assert_eq!(parse(br#"{"egress_bps":-5}"#, 1000), None);
    }
}
