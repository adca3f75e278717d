//! Stream-aware health checks that drive the BGP speaker and publish the site feed.
