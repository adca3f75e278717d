//! What a stream node says about itself in its status document: how loaded it is and whether
//! an operator is draining it. Read beside the health probe; a node that does not publish
//! one (a plain web server) simply reports nothing.

use std::time::Duration;

use serde::Deserialize;

use crate::probe::http;

/// A node's own account of itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
    let scheme_end = status_url.find("://")? + 3;
    let rest = &status_url[scheme_end..];
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let fetched = client
        .get(
            &format!("{}{host}", &status_url[..scheme_end]),
            path,
            timeout,
        )
        .await
        .ok()?;
    if fetched.status != 200 {
        return None;
    }
    parse(&fetched.body, capacity_mbps)
}

/// Reads a status document; `None` when it is not one.
pub fn parse(body: &[u8], capacity_mbps: u32) -> Option<NodeReport> {
    let doc: StatusDocument = serde_json::from_slice(body).ok()?;
    let capacity = f64::from(capacity_mbps) * 1e6;
    let load = if capacity > 0.0 {
        doc.egress_bps as f64 / capacity
    } else {
        0.0
    };
    Some(NodeReport {
        load,
        draining: doc.draining,
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
    fn anything_but_a_status_document_reports_nothing() {
        assert_eq!(parse(b"<html>", 1000), None);
        assert_eq!(parse(b"[1,2]", 1000), None);
        assert_eq!(parse(br#"{"egress_bps":-5}"#, 1000), None);
    }
}
