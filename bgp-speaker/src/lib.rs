//! BGP-4 speaker announcing a site's anycast prefixes to its upstream routers.
