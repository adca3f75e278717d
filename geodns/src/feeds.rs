//! Following every site's healthd feed: each new document applies to the next query.
//!
//! A feed that goes silent keeps its last state for `dns.feed_grace`; after that the site is
//! unknown and answered as if all its nodes were up (the failure table: never an empty answer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use config::Deployment;
use feed::SiteFeed;
use feed::follower::{FeedEvent, follow};
use tracing::{info, warn};

use crate::console::board::Level;
use crate::state::Shared;

/// The running followers and staleness watch; dropping it stops them (a reload starts a new
/// set for the new deployment's sites, URLs, token and grace).
pub struct Followers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Followers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts one follower per site and the staleness watch.
pub fn spawn(shared: Arc<Shared>, deployment: &Deployment) -> Followers {
    let dns = deployment.dns.clone().unwrap_or_default();
    let token = dns.feed_token.as_ref().and_then(|t| match t.resolve() {
        Ok(token) => Some(token),
        Err(e) => {
            warn!("feed token unavailable, following feeds without it: {e}");
            None
        }
    });
    let mut tasks: Vec<_> = deployment
        .sites
        .iter()
        .map(|site| {
            tokio::spawn(follow_site(
                shared.clone(),
                site.name.clone(),
                site.healthd.feed_url(),
                token.clone(),
            ))
        })
        .collect();
    tasks.push(tokio::spawn(watch_staleness(shared, dns.feed_grace.get())));
    Followers(tasks)
}

async fn follow_site(shared: Arc<Shared>, site: String, url: String, token: Option<String>) {
    follow(&site, &url, token.as_deref(), |event| {
        apply(&shared, &site, event)
    })
    .await;
}

/// Applies one event of `site`'s feed.
pub fn apply(shared: &Shared, site: &str, event: FeedEvent) {
    let document = shared.update_health(|health| {
        let view = health.sites.iter_mut().find(|s| s.name == site)?;
        let first = view.last_feed.is_none();
        view.last_feed = Some(Instant::now());
        let FeedEvent::Document(doc) = event else {
            return None;
        };
        if doc.site != site {
            warn!(%site, other = %doc.site, "feed document is for another site, ignored");
            return None;
        }
        // The follower passes only documents newer than the last one, or from a publisher
        // that restarted (whose generations start over).
        let changed = apply_document(view, &doc);
        view.generation = doc.generation;
        if changed || first {
            view.changed_at = Some(Instant::now());
            let up = view.nodes.iter().filter(|n| n.healthy).count();
            info!(%site, generation = doc.generation, healthy_nodes = up, nodes = view.nodes.len(), "site feed applied");
        }
        Some((doc, first))
    });
    if let Some((doc, first)) = document {
        if first && shared.console.document(site).is_some() {
            shared
                .console
                .note(site, Level::Info, "feed heard again".to_owned());
        }
        shared.console.feed(&doc);
    }
}

/// Copies node health and load from the document; true when something changed.
fn apply_document(view: &mut crate::health::SiteView, doc: &SiteFeed) -> bool {
    let mut changed = false;
    for node in &mut view.nodes {
        let Some(state) = doc.nodes.iter().find(|n| n.name == node.name) else {
            continue;
        };
        // A draining node takes no new viewers.
        let healthy = state.healthy && !state.draining;
        changed |= node.healthy != healthy;
        node.healthy = healthy;
        node.load = state.load.clamp(0.0, 1.0);
    }
    changed
}

/// Marks silent feeds unknown after the grace period: their nodes count as up again.
async fn watch_staleness(shared: Arc<Shared>, grace: Duration) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let silent =
            |view: &crate::health::SiteView| view.last_feed.is_some_and(|t| t.elapsed() > grace);
        if !shared.health().sites.iter().any(silent) {
            continue;
        }
        shared.update_health(|health| {
            for view in health.sites.iter_mut().filter(|v| silent(v)) {
                warn!(site = %view.name, grace_secs = grace.as_secs(), "site feed silent past its grace period: answering as if all its nodes were up");
                shared.console.note(
                    &view.name,
                    Level::Warn,
                    format!(
                        "feed silent past its grace ({} s): answering as if all its nodes were up",
                        grace.as_secs()
                    ),
                );
                view.last_feed = None;
                view.changed_at = Some(Instant::now());
                for node in &mut view.nodes {
                    node.healthy = true;
                    node.load = 0.0;
                }
            }
        });
    }
}
