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
//! healthy. Each site publishes its verdict at once, and the sites are ranked by their order in
//! the deployment file:
//! - a site that goes down while a site ranked before it is heard healthy withdraws at once;
//! - otherwise it holds its withdraw for `healthd.withdraw_settle` (one feed round trip between
//!   healthds), long enough for the verdict of any site failing at the same moment to arrive.
//!
//! Of sites failing together, the one ranked first sees no healthy site ahead of it and
//! settles; every other one withdraws at once, which that first site hears within the settle,
//! so it finds every other site down and fails open. The last site standing never withdraws,
//! and only the first-ranked site of a service ever pays the settle.

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

    /// What the sites other than `own` carrying `service` say of it at `now`: heard within
    /// `grace` counts, unheard sites are unknown (never down, never healthy).
    pub fn elsewhere(
        &self,
        deployment: &Deployment,
        own: &str,
        service: &str,
        grace: Duration,
        now: Instant,
    ) -> Elsewhere {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let verdict = |site: &str| {
            heard
                .get(site)
                .filter(|h| now.saturating_duration_since(h.at) <= grace)
                .and_then(|h| h.services.get(service).copied())
        };
        let carries = |site: &config::site::Site| {
            site.nodes
                .iter()
                .any(|n| n.services.iter().any(|x| x == service))
        };
        // Sites listed before `own` rank ahead of it.
        let (mut others, mut all_down, mut ahead, mut healthy_ahead) = (0, true, true, false);
        for site in &deployment.sites {
            if site.name == own {
                ahead = false;
                continue;
            }
            if !carries(site) {
                continue;
            }
            others += 1;
            match verdict(&site.name) {
                Some(false) => {}
                Some(true) => {
                    all_down = false;
                    healthy_ahead |= ahead;
                }
                None => all_down = false,
            }
        }
        if others == 0 {
            Elsewhere::Nobody
        } else if all_down {
            Elsewhere::AllDown
        } else if healthy_ahead {
            Elsewhere::HealthyAhead
        } else {
            Elsewhere::Unsure
        }
    }
}

/// What the other sites carrying a service say of it, as far as this site's withdraw goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elsewhere {
    /// No other site carries the service: a withdraw is just a withdraw.
    Nobody,
    /// Every other site carrying it is known down: fail open rather than withdraw.
    AllDown,
    /// A site ranked before this one is known healthy: withdraw at once.
    HealthyAhead,
    /// Sites unheard, or healthy only after this one: settle before withdrawing.
    Unsure,
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
            peers: Vec::new(),
        })
    }

    fn three_sites() -> Deployment {
        let text = include_str!("../../config/examples/three-sites.toml");
        Deployment::parse(text, std::path::Path::new("three-sites.toml")).unwrap()
    }

    #[test]
    fn only_sites_heard_recently_and_down_count_as_down() {
        let d = three_sites();
        let peers = OtherSites::default();
        let grace = Duration::from_secs(30);
        let t0 = Instant::now();
        let down = |now| peers.elsewhere(&d, "ams", "live", grace, now) == Elsewhere::AllDown;
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
        assert_eq!(
            peers.elsewhere(&d, "ams", "other", grace, t0),
            Elsewhere::Nobody,
            "a service no other site carries is never failed open"
        );
    }

    #[test]
    fn only_a_healthy_site_ranked_ahead_lets_a_site_withdraw_at_once() {
        // The example lists ams, fra, lon in that order.
        let d = three_sites();
        let peers = OtherSites::default();
        let grace = Duration::from_secs(30);
        let t0 = Instant::now();
        let of = |site| peers.elsewhere(&d, site, "live", grace, t0);
        peers.record("ams", doc("ams", true), t0);
        peers.record("fra", doc("fra", true), t0);
        peers.record("lon", doc("lon", true), t0);
        assert_eq!(of("lon"), Elsewhere::HealthyAhead);
        assert_eq!(of("fra"), Elsewhere::HealthyAhead);
        assert_eq!(
            of("ams"),
            Elsewhere::Unsure,
            "the first-ranked site settles: the others may be failing with it"
        );
        // Amsterdam and Frankfurt fail together: Frankfurt still saw Amsterdam healthy and
        // withdrew, London is healthy. Amsterdam must wait for London, not for Frankfurt.
        peers.record("fra", doc("fra", false), t0);
        assert_eq!(of("ams"), Elsewhere::Unsure);
        peers.record("lon", doc("lon", false), t0);
        assert_eq!(of("ams"), Elsewhere::AllDown, "the last site standing");
        peers.record("ams", doc("ams", false), t0);
        assert_eq!(of("lon"), Elsewhere::AllDown);
        peers.record("ams", doc("ams", true), t0);
        assert_eq!(of("lon"), Elsewhere::HealthyAhead, "Amsterdam is back");
    }
}
