//! The other sites, as their feeds describe them: what this site needs to fail open.
//!
//! The failure table (docs/ARCHITECTURE.md) says that when every site is unhealthy the control plane keeps
//! announcing the least-bad sites ("never a black hole"). Each site decides alone, so each
//! healthd follows the other sites' feeds (the same streams geodns follows): a site whose
//! service is down keeps announcing it when every other site carrying the service is known to
//! be down too. Known means a feed heard within `dns.feed_grace` (the grace geodns gives a
//! silent feed) whose verdict for the service is unhealthy. A site we cannot hear may be fine
//! and announcing, so it never counts as down: a partition between healthds does not send
//! viewers to a broken site while a healthy one exists. A service that no other site carries
//! is withdrawn as usual when its one site is down.
//!
//! Sites that go down together must not all withdraw because each still saw another one
//! healthy: a site whose service has just gone down publishes that at once but holds its
//! withdraw for `healthd.withdraw_settle`, long enough for the others' feeds to say whether
//! they went down too. The last site standing then sees every other one down and never
//! withdraws.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config::Deployment;
use feed::follower::{FeedEvent, follow};
use tracing::warn;

/// What was last heard from one site.
#[derive(Debug, Clone)]
struct Heard {
    at: Instant,
    /// Service name → healthy, from the site's last document.
    services: HashMap<String, bool>,
}

/// The other sites' service verdicts, kept up to date by followers.
#[derive(Debug, Default)]
pub struct OtherSites {
    heard: Mutex<HashMap<String, Heard>>,
    /// Signalled when a site's verdict for some service changes, so the site task decides
    /// again at once rather than at its next round.
    pub changed: tokio::sync::Notify,
}

impl OtherSites {
    /// Records an event from `site`'s feed.
    pub fn record(&self, site: &str, event: FeedEvent, at: Instant) {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            FeedEvent::Document(doc) => {
                if doc.site != site {
                    warn!(%site, other = %doc.site, "a peer's feed names another site, ignored");
                    return;
                }
                let services: HashMap<String, bool> = doc
                    .services
                    .iter()
                    .map(|s| (s.name.clone(), s.healthy))
                    .collect();
                let changed = heard.get(site).is_none_or(|h| h.services != services);
                heard.insert(site.to_owned(), Heard { at, services });
                if changed {
                    self.changed.notify_one();
                }
            }
            FeedEvent::Alive => {
                if let Some(h) = heard.get_mut(site) {
                    h.at = at;
                }
            }
        }
    }

    /// Whether `service` is known to be down at every site other than `own` that carries it,
    /// and at least one such site exists.
    pub fn every_other_site_down(
        &self,
        deployment: &Deployment,
        own: &str,
        service: &str,
        grace: Duration,
        now: Instant,
    ) -> bool {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let mut others = deployment
            .sites
            .iter()
            .filter(|s| s.name != own)
            .filter(|s| {
                s.nodes
                    .iter()
                    .any(|n| n.services.iter().any(|x| x == service))
            })
            .peekable();
        if others.peek().is_none() {
            return false;
        }
        others.all(|site| {
            heard.get(&site.name).is_some_and(|h| {
                now.saturating_duration_since(h.at) <= grace
                    && h.services.get(service) == Some(&false)
            })
        })
    }
}

/// The running followers; dropping it stops them.
pub struct Followers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Followers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Follows every site of `deployment` but `own`, each with its own feed token.
pub fn follow_all(peers: Arc<OtherSites>, deployment: &Deployment, own: &str) -> Followers {
    let tasks = deployment
        .sites
        .iter()
        .filter(|s| s.name != own)
        .map(|site| {
            let token = site.healthd.feed_token.as_ref().and_then(|t| match t.resolve() {
                Ok(token) => Some(token),
                Err(e) => {
                    warn!(site = %site.name, "cannot read the site's feed token, following without it: {e}");
                    None
                }
            });
            let (name, url, peers) = (site.name.clone(), site.healthd.feed_url(), peers.clone());
            tokio::spawn(async move {
                follow(&name, &url, token.as_deref(), |event| {
                    peers.record(&name, event, Instant::now());
                })
                .await;
            })
        })
        .collect();
    Followers(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use feed::{ServiceState, SiteFeed};

    fn doc(site: &str, healthy: bool) -> FeedEvent {
        FeedEvent::Document(SiteFeed {
            site: site.into(),
            instance: "test".into(),
            generation: 1,
            services: vec![ServiceState {
                name: "live".into(),
                healthy,
                announcement: String::new(),
                reason: String::new(),
            }],
            nodes: Vec::new(),
        })
    }

    #[test]
    fn only_sites_heard_recently_and_down_count_as_down() {
        let text = include_str!("../../config/examples/three-sites.toml");
        let d = Deployment::parse(text, std::path::Path::new("three-sites.toml")).unwrap();
        let peers = OtherSites::default();
        let grace = Duration::from_secs(30);
        let t0 = Instant::now();
        let down = |now| peers.every_other_site_down(&d, "ams", "live", grace, now);
        assert!(!down(t0), "nothing heard: the others may be fine");
        peers.record("fra", doc("fra", false), t0);
        assert!(!down(t0), "London not heard yet");
        peers.record("lon", doc("lon", true), t0);
        assert!(!down(t0), "London is healthy");
        peers.record("lon", doc("lon", false), t0);
        assert!(down(t0), "both others down");
        peers.record("fra", FeedEvent::Alive, t0 + Duration::from_secs(20));
        assert!(
            !down(t0 + Duration::from_secs(31)),
            "London silent past the grace: unknown, so not down"
        );
        peers.record("lon", FeedEvent::Alive, t0 + Duration::from_secs(25));
        assert!(down(t0 + Duration::from_secs(31)));
        peers.record("lon", doc("fra", false), t0);
        assert!(
            !peers.every_other_site_down(&d, "ams", "other", grace, t0),
            "a service no other site carries is never failed open"
        );
    }
}
