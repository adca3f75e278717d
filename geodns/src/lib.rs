//! Authoritative geo-DNS steering viewers to the nearest healthy site.
