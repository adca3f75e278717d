//! Serving a feed (healthd's side).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use crate::SiteFeed;

/// Publishes new versions of the document; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    tx: Arc<watch::Sender<SiteFeed>>,
}

impl Publisher {
    /// A publisher of a new instance (see [`crate::new_instance`]).
    pub fn new(mut initial: SiteFeed) -> Self {
        initial.instance = crate::new_instance();
        Self {
            tx: Arc::new(watch::channel(initial).0),
        }
    }

    /// Replaces the document; instance and generation are set here so that the generation
    /// always grows within the instance.
    pub fn publish(&self, mut feed: SiteFeed) {
        self.tx.send_modify(|current| {
            feed.instance = current.instance.clone();
            feed.generation = current.generation + 1;
            *current = feed;
        });
    }

    pub fn current(&self) -> SiteFeed {
        self.tx.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<SiteFeed> {
        self.tx.subscribe()
    }
}

#[derive(Clone)]
struct Feed {
    publisher: Publisher,
    token: Option<Arc<str>>,
}

/// `/feed` and `/feed/stream`, protected by `token` (as `Authorization: Bearer TOKEN`) when set.
pub fn router(publisher: Publisher, token: Option<String>) -> Router {
    Router::new()
        .route("/feed", get(whole))
        .route("/feed/stream", get(stream))
        .with_state(Feed {
            publisher,
            token: token.map(Arc::from),
        })
}

fn authorized(feed: &Feed, headers: &HeaderMap) -> bool {
    let Some(token) = &feed.token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given == &**token)
}

async fn whole(State(feed): State<Feed>, headers: HeaderMap) -> Response {
    if !authorized(&feed, &headers) {
        return (StatusCode::UNAUTHORIZED, "feed token required\n").into_response();
    }
    axum::Json(feed.publisher.current()).into_response()
}

async fn stream(State(feed): State<Feed>, headers: HeaderMap) -> Response {
    if !authorized(&feed, &headers) {
        return (StatusCode::UNAUTHORIZED, "feed token required\n").into_response();
    }
    let mut rx = feed.publisher.subscribe();
    let events = daemon::sse::from_task(move |tx| async move {
        loop {
            let doc = rx.borrow_and_update().clone();
            let data = serde_json::to_string(&doc).unwrap_or_default();
            if tx
                .send(Ok::<_, Infallible>(
                    Event::default().event("feed").data(data),
                ))
                .await
                .is_err()
            {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    // A comment every heartbeat: readers tell a silent feed from a quiet one.
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(crate::HEARTBEAT).text("ping"))
        .into_response()
}
