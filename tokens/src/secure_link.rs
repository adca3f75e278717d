//! nginx `secure_link` links: `?md5=HASH&expires=UNIX`, where HASH is the MD5 of an expression
//! (nginx's `secure_link_md5`) in unpadded base64url, so that middleware written for nginx
//! works unchanged. The expression's variables: `$secure_link_expires` (the `expires`
//! parameter as sent), `$uri` (the path), `$remote_addr` (the client's address) and `$secret`
//! (the key, which nginx writes inline). A link without `expires` never expires, as in nginx.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use md5::{Digest, Md5};

use crate::{Refusal, Request, wire};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Expires,
    Uri,
    RemoteAddr,
    Secret,
}

/// Signs and checks with a profile's keys.
#[derive(Clone)]
pub struct Signer {
    parts: Vec<Part>,
    expires_param: String,
    /// Newest first: the first signs.
    keys: Vec<Vec<u8>>,
}

/// The variables, longest first so that a name's prefix never wins.
const VARIABLES: [(&str, Part); 4] = [
    ("secure_link_expires", Part::Expires),
    ("remote_addr", Part::RemoteAddr),
    ("secret", Part::Secret),
    ("uri", Part::Uri),
];

fn parse(expression: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = expression;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match VARIABLES.iter().find(|(name, _)| after.starts_with(name)) {
            Some((name, part)) => {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(part.clone());
                rest = &after[name.len()..];
            }
            None => {
                text.push('$');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

impl Signer {
    pub fn new(expression: &str, expires_param: &str, keys: Vec<Vec<u8>>) -> Self {
        Self {
            parts: parse(expression),
            expires_param: expires_param.to_owned(),
            keys,
        }
    }

    /// The query parameter of the expiry.
    pub fn expires_param(&self) -> &str {
        &self.expires_param
    }

    /// Whether the expression signs the client's address.
    pub fn binds_address(&self) -> bool {
        self.parts.contains(&Part::RemoteAddr)
    }

    fn md5(&self, key: &[u8], uri: &str, client: std::net::IpAddr, expires: &str) -> [u8; 16] {
        let mut hash = Md5::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => hash.update(t.as_bytes()),
                Part::Expires => hash.update(expires.as_bytes()),
                Part::Uri => hash.update(uri.as_bytes()),
                Part::RemoteAddr => hash.update(client.to_canonical().to_string().as_bytes()),
                Part::Secret => hash.update(key),
            }
        }
        hash.finalize().into()
    }

    /// The hash for `uri`, signed with the first key, as it goes in the link.
    pub fn digest(&self, uri: &str, client: std::net::IpAddr, expires: Option<u64>) -> String {
        let key = self.keys.first().map_or(&[][..], Vec::as_slice);
        let expires = expires.map(|e| e.to_string()).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(self.md5(key, uri, client, &expires))
    }

    /// The query parameters of a link to `uri`.
    pub fn query(
        &self,
        param: &str,
        uri: &str,
        client: std::net::IpAddr,
        expires: Option<u64>,
    ) -> String {
        let digest = wire::pair(param, &self.digest(uri, client, expires));
        match expires {
            Some(e) => format!("{digest}&{}={e}", self.expires_param),
            None => digest,
        }
    }

    /// Checks the link `request` came by; its expiry, if it has one.
    pub fn check(
        &self,
        param: &str,
        request: &Request<'_>,
        skew: u64,
    ) -> Result<Option<u64>, Refusal> {
        let presented = wire::find(request.query, request.cookie, param).ok_or(Refusal::Missing)?;
        // nginx writes it unpadded; some middleware pads.
        let presented = URL_SAFE_NO_PAD
            .decode(&presented)
            .or_else(|_| URL_SAFE.decode(&presented))
            .map_err(|_| Refusal::Malformed)?;
        let expires_text = wire::find(request.query, None, &self.expires_param).unwrap_or_default();
        let expires = match expires_text.as_str() {
            "" => None,
            text => Some(text.parse::<u64>().map_err(|_| Refusal::Malformed)?),
        };
        let genuine = self.keys.iter().any(|key| {
            let expected = self.md5(key, request.path, request.client, &expires_text);
            // Constant time: every byte compared whatever the first difference.
            presented.len() == expected.len()
                && presented
                    .iter()
                    .zip(expected)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !genuine {
            return Err(Refusal::Forged);
        }
        if expires.is_some_and(|e| request.now >= e.saturating_add(skew)) {
            return Err(Refusal::Expired);
        }
        Ok(expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn signer() -> Signer {
        Signer::new(
            "$secure_link_expires$uri$remote_addr $secret",
            "expires",
            vec![b"s3cret".to_vec(), b"old".to_vec()],
        )
    }

    #[test]
    fn the_expression_reads_as_nginx_reads_it() {
        assert_eq!(
            parse("$secure_link_expires$uri$remote_addr $secret$unknown"),
            vec![
                Part::Expires,
                Part::Uri,
                Part::RemoteAddr,
                Part::Text(" ".into()),
                Part::Secret,
                Part::Text("$unknown".into()),
            ]
        );
    }

    #[test]
    fn a_link_is_valid_for_its_uri_address_and_time() {
        let s = signer();
        let client = "192.0.2.7".parse().unwrap();
        let query = s.query("md5", "/news/index.m3u8", client, Some(NOW + 60));
        // The same hash as `echo -n '<expires>/news/index.m3u8192.0.2.7 s3cret' | openssl md5
        // -binary | openssl base64 | tr +/ -_ | tr -d =` gives (nginx's documented recipe).
        let expected = URL_SAFE_NO_PAD.encode(
            Md5::digest(format!("{}/news/index.m3u8192.0.2.7 s3cret", NOW + 60)).as_slice(),
        );
        assert_eq!(query, format!("md5={expected}&expires={}", NOW + 60));
        let request = |path, q: &'static str, now| Request {
            path,
            query: Some(q),
            cookie: None,
            client,
            now,
        };
        let q: &'static str = Box::leak(query.into_boxed_str());
        assert_eq!(
            s.check("md5", &request("/news/index.m3u8", q, NOW), 0),
            Ok(Some(NOW + 60))
        );
        assert_eq!(
            s.check("md5", &request("/news/index.m3u8", q, NOW + 60), 0),
            Err(Refusal::Expired)
        );
        assert_eq!(
            s.check("md5", &request("/news/seg1.ts", q, NOW), 0),
            Err(Refusal::Forged)
        );
        assert_eq!(
            s.check("md5", &request("/news/index.m3u8", "expires=1", NOW), 0),
            Err(Refusal::Missing)
        );
        assert_eq!(
            s.check(
                "md5",
                &request("/news/index.m3u8", "md5=!!&expires=1", NOW),
                0
            ),
            Err(Refusal::Malformed)
        );
        // Signed with the previous key.
        let old = Signer::new(
            "$secure_link_expires$uri$remote_addr $secret",
            "expires",
            vec![b"old".to_vec()],
        );
        let q: &'static str = Box::leak(
            old.query("md5", "/news/index.m3u8", client, Some(NOW + 60))
                .into_boxed_str(),
        );
        assert!(
            s.check("md5", &request("/news/index.m3u8", q, NOW), 0)
                .is_ok()
        );
    }
}
