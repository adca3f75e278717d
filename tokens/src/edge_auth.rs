//! Akamai EdgeAuth tokens (Auth Token 2.0), as the `akamai-edgeauth` reference mints them:
//!
//! ```text
//! [ip=ADDR~][st=START~]exp=END[~acl=/news/*!/sports/*][~id=SESSION][~data=OPAQUE]~hmac=HEX
//! ```
//!
//! The HMAC (SHA-256 by default, keyed by the hex-decoded key) is over the fields before
//! `~hmac=` exactly as they came, followed by `~url=PATH` for a URL token (one without `acl`).
//! A token is checked for form, then signature, then time, address and path, so only a
//! genuine token is ever called expired or misplaced.

use config::token::TokenAlgorithm;
use hmac::{Hmac, Mac};

use crate::{Mint, MintError, Refusal, Request, glob};

/// Signs and checks with a profile's keys.
#[derive(Clone)]
pub struct Signer {
    algorithm: TokenAlgorithm,
    /// Newest first: the first signs.
    keys: Vec<Vec<u8>>,
}

/// A token that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token as it came.
    pub text: String,
    pub ip: Option<String>,
    pub start: Option<u64>,
    pub end: u64,
    /// The ACL's paths; none for a URL token.
    pub acl: Option<Vec<String>>,
    pub id: Option<String>,
    pub data: Option<String>,
}

impl Token {
    /// Whether the token's ACL lets it ask for `path`.
    pub fn covers(&self, path: &str) -> bool {
        self.acl
            .as_ref()
            .is_some_and(|acl| acl.iter().any(|p| glob::matches(p, path)))
    }
}

/// The fields of a token, as parsed.
#[derive(Default)]
struct Fields<'a> {
    ip: Option<&'a str>,
    st: Option<&'a str>,
    exp: Option<&'a str>,
    acl: Option<&'a str>,
    id: Option<&'a str>,
    data: Option<&'a str>,
}

impl Fields<'_> {
    /// The fields in the order the reference writes them, `name=value` each.
    fn in_order(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("ip", self.ip),
            ("st", self.st),
            ("exp", self.exp),
            ("acl", self.acl),
            ("id", self.id),
            ("data", self.data),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }
}

/// The field separator; the ACL's is `!`.
const FIELD: char = '~';

impl Signer {
    pub fn new(algorithm: TokenAlgorithm, keys: Vec<Vec<u8>>) -> Self {
        Self { algorithm, keys }
    }

    /// The HMAC of `message` with `key`, as lower-case hex.
    fn sign(&self, key: &[u8], message: &str) -> String {
        fn hex_of<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &str) -> String {
            // HMAC takes keys of any length: this cannot fail.
            match <M as hmac::digest::KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(message.as_bytes());
                    hex::encode(mac.finalize().into_bytes())
                }
                Err(_) => String::new(),
            }
        }
        match self.algorithm {
            TokenAlgorithm::Sha256 => hex_of::<Hmac<sha2::Sha256>>(key, message),
            TokenAlgorithm::Sha1 => hex_of::<Hmac<sha1::Sha1>>(key, message),
            TokenAlgorithm::Md5 => hex_of::<Hmac<md5::Md5>>(key, message),
        }
    }

    /// Whether some key signs `message` as `presented` (hex), in constant time per key.
    fn verified(&self, message: &str, presented: &[u8]) -> bool {
        fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &str, tag: &[u8]) -> bool {
            <M as hmac::digest::KeyInit>::new_from_slice(key).is_ok_and(|mut mac| {
                mac.update(message.as_bytes());
                mac.verify_slice(tag).is_ok()
            })
        }
        self.keys.iter().any(|key| match self.algorithm {
            TokenAlgorithm::Sha256 => check::<Hmac<sha2::Sha256>>(key, message, presented),
            TokenAlgorithm::Sha1 => check::<Hmac<sha1::Sha1>>(key, message, presented),
            TokenAlgorithm::Md5 => check::<Hmac<md5::Md5>>(key, message, presented),
        })
    }

    /// Checks `text` (the token, decoded) for `request`, allowing `skew` seconds of clock
    /// difference.
    pub fn check(&self, text: &str, request: &Request<'_>, skew: u64) -> Result<Token, Refusal> {
        let (signed, hmac) = text.rsplit_once("~hmac=").ok_or(Refusal::Malformed)?;
        let presented = hex::decode(hmac).map_err(|_| Refusal::Malformed)?;
        let mut f = Fields::default();
        for field in signed.split(FIELD) {
            let (name, value) = field.split_once('=').ok_or(Refusal::Malformed)?;
            let slot = match name {
                "ip" => &mut f.ip,
                "st" => &mut f.st,
                "exp" => &mut f.exp,
                "acl" => &mut f.acl,
                "id" => &mut f.id,
                "data" => &mut f.data,
                _ => return Err(Refusal::Malformed),
            };
            if slot.replace(value).is_some() {
                return Err(Refusal::Malformed);
            }
        }
        let number = |v: Option<&str>| -> Result<Option<u64>, Refusal> {
            v.map(|v| v.parse::<u64>().map_err(|_| Refusal::Malformed))
                .transpose()
        };
        let end = number(f.exp)?.ok_or(Refusal::Malformed)?;
        let start = number(f.st)?;
        let message = match f.acl {
            Some(_) => signed.to_owned(),
            None => format!("{signed}{FIELD}url={}", request.path),
        };
        if !self.verified(&message, &presented) {
            return Err(Refusal::Forged);
        }
        if start.is_some_and(|st| st > request.now.saturating_add(skew)) {
            return Err(Refusal::NotYetValid);
        }
        if request.now >= end.saturating_add(skew) {
            return Err(Refusal::Expired);
        }
        if let Some(ip) = f.ip
            && ip != request.client.to_canonical().to_string()
        {
            return Err(Refusal::WrongAddress);
        }
        let token = Token {
            text: text.to_owned(),
            ip: f.ip.map(str::to_owned),
            start,
            end,
            acl: f.acl.map(|acl| acl.split('!').map(str::to_owned).collect()),
            id: f.id.map(str::to_owned),
            data: f.data.map(str::to_owned),
        };
        // A URL token was signed for its path: past the signature, it fits.
        if token.acl.is_some() && !token.covers(request.path) {
            return Err(Refusal::WrongPath);
        }
        Ok(token)
    }

    /// Signs `fields` (and `url` for a URL token) with the first key: the whole token.
    fn token(&self, fields: &Fields<'_>, url: Option<&str>) -> String {
        let mut signed = String::new();
        for (name, value) in fields.in_order() {
            if !signed.is_empty() {
                signed.push(FIELD);
            }
            signed.push_str(name);
            signed.push('=');
            signed.push_str(value);
        }
        let message = match url {
            Some(url) => format!("{signed}{FIELD}url={url}"),
            None => signed.clone(),
        };
        let key = self.keys.first().map_or(&[][..], Vec::as_slice);
        format!("{signed}{FIELD}hmac={}", self.sign(key, &message))
    }

    /// A token as `mint` says.
    pub fn mint(&self, mint: &Mint<'_>) -> Result<String, MintError> {
        if mint.acl.is_some() == mint.url.is_some() {
            return Err(MintError::AclOrUrl);
        }
        let end = mint.end.ok_or(MintError::NoExpiry)?;
        if let Some(start) = mint.start
            && end <= start
        {
            return Err(MintError::EndBeforeStart { start, end });
        }
        let (ip, st, exp) = (
            mint.ip.map(|a| a.to_string()),
            mint.start.map(|s| s.to_string()),
            end.to_string(),
        );
        let fields = Fields {
            ip: ip.as_deref(),
            st: st.as_deref(),
            exp: Some(&exp),
            acl: mint.acl,
            id: mint.id,
            data: mint.data,
        };
        for (_, value) in fields.in_order() {
            if value.contains(FIELD) {
                return Err(MintError::Delimiter(value.to_owned()));
            }
        }
        Ok(self.token(&fields, mint.url))
    }

    /// `token` for another ACL: the same address, start, expiry, session and data, signed with
    /// the first key (for the files a playlist names, when its token does not cover them).
    pub fn derived(&self, token: &Token, acl: &str) -> String {
        let (st, exp) = (token.start.map(|s| s.to_string()), token.end.to_string());
        let fields = Fields {
            ip: token.ip.as_deref(),
            st: st.as_deref(),
            exp: Some(&exp),
            acl: Some(acl),
            id: token.id.as_deref(),
            data: token.data.as_deref(),
        };
        self.token(&fields, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn signer(keys: &[&str]) -> Signer {
        Signer::new(
            TokenAlgorithm::Sha256,
            keys.iter().map(|k| hex::decode(k).unwrap()).collect(),
        )
    }

    fn request(path: &str) -> Request<'_> {
        Request {
            path,
            query: None,
            cookie: None,
            client: "192.0.2.7".parse().unwrap(),
            now: NOW,
        }
    }

    fn acl_token(s: &Signer, acl: &str, start: Option<u64>, end: u64) -> String {
        s.mint(&Mint {
            acl: Some(acl),
            start,
            end: Some(end),
            ..Mint::default()
        })
        .unwrap()
    }

    #[test]
    fn a_token_is_valid_for_its_acl_and_time_and_refused_for_everything_else() {
        let s = signer(&["a1b2c3d4"]);
        let t = acl_token(&s, "/news/*!/sports/*", Some(NOW - 10), NOW + 60);
        assert!(t.starts_with(&format!(
            "st={}~exp={}~acl=/news/*!/sports/*~hmac=",
            NOW - 10,
            NOW + 60
        )));
        let ok = s.check(&t, &request("/sports/360p/seg1.ts"), 0).unwrap();
        assert_eq!((ok.start, ok.end), (Some(NOW - 10), NOW + 60));
        assert_eq!(
            s.check(&t, &request("/movies/a.ts"), 0),
            Err(Refusal::WrongPath)
        );
        let late = Request {
            now: NOW + 60,
            ..request("/news/index.m3u8")
        };
        assert_eq!(s.check(&t, &late, 0), Err(Refusal::Expired));
        assert!(s.check(&t, &late, 30).is_ok(), "within the clock skew");
        let early = acl_token(&s, "/news/*", Some(NOW + 100), NOW + 200);
        assert_eq!(
            s.check(&early, &request("/news/a.ts"), 30),
            Err(Refusal::NotYetValid)
        );
        assert!(s.check(&early, &request("/news/a.ts"), 100).is_ok());
    }

    #[test]
    fn forged_tampered_and_malformed_tokens_are_told_apart() {
        let s = signer(&["a1b2c3d4"]);
        let t = acl_token(&s, "/news/*", None, NOW + 60);
        let r = request("/news/index.m3u8");
        let tampered = t.replace("/news/*", "/*");
        assert_eq!(s.check(&tampered, &r, 0), Err(Refusal::Forged));
        let later = t.replace(&(NOW + 60).to_string(), &(NOW + 6000).to_string());
        assert_eq!(s.check(&later, &r, 0), Err(Refusal::Forged));
        assert_eq!(
            signer(&["ffff"]).check(&t, &r, 0),
            Err(Refusal::Forged),
            "wrong key"
        );
        for bad in [
            "",
            "hmac=00",
            "exp=1",
            "exp=x~hmac=00",
            "exp=1~hmac=zz",
            "exp=1~exp=2~hmac=00",
            "exp=1~foo=2~hmac=00",
            "exp~hmac=00",
            "acl=/*~hmac=00",
        ] {
            assert_eq!(s.check(bad, &r, 0), Err(Refusal::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn the_previous_key_still_validates_and_the_first_signs() {
        let old = signer(&["0102"]);
        let rotated = signer(&["0304", "0102"]);
        let t = acl_token(&old, "/news/*", None, NOW + 60);
        assert!(rotated.check(&t, &request("/news/a.ts"), 0).is_ok());
        let new = acl_token(&rotated, "/news/*", None, NOW + 60);
        assert!(
            signer(&["0304"])
                .check(&new, &request("/news/a.ts"), 0)
                .is_ok()
        );
        assert_eq!(
            old.check(&new, &request("/news/a.ts"), 0),
            Err(Refusal::Forged)
        );
    }

    #[test]
    fn url_tokens_address_and_session_fields() {
        let s = signer(&["a1b2c3d4"]);
        let t = s
            .mint(&Mint {
                url: Some("/news/index.m3u8"),
                end: Some(NOW + 60),
                ip: Some("192.0.2.7".parse().unwrap()),
                id: Some("session-42"),
                data: Some("plan=gold"),
                ..Mint::default()
            })
            .unwrap();
        assert!(t.starts_with(&format!(
            "ip=192.0.2.7~exp={}~id=session-42~data=plan=gold~hmac=",
            NOW + 60
        )));
        let ok = s.check(&t, &request("/news/index.m3u8"), 0).unwrap();
        assert_eq!(ok.id.as_deref(), Some("session-42"));
        assert_eq!(
            s.check(&t, &request("/news/other.m3u8"), 0),
            Err(Refusal::Forged)
        );
        let elsewhere = Request {
            client: "198.51.100.1".parse().unwrap(),
            ..request("/news/index.m3u8")
        };
        assert_eq!(s.check(&t, &elsewhere, 0), Err(Refusal::WrongAddress));
        // Carried on to a segment: same session, address and expiry, the directory's ACL.
        let derived = s.derived(&ok, "/news/*");
        let d = s.check(&derived, &request("/news/seg1.ts"), 0).unwrap();
        assert_eq!((d.id, d.ip, d.end), (ok.id, ok.ip, ok.end));
        assert_eq!(
            s.mint(&Mint {
                acl: Some("/a"),
                url: Some("/b"),
                end: Some(NOW),
                ..Mint::default()
            }),
            Err(MintError::AclOrUrl)
        );
        assert!(matches!(
            s.mint(&Mint {
                acl: Some("/a"),
                id: Some("x~y"),
                end: Some(NOW),
                ..Mint::default()
            }),
            Err(MintError::Delimiter(_))
        ));
    }
}
