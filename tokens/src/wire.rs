//! Where a token travels: a query parameter or a cookie.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The longest token taken: tokens are a few hundred bytes; anything longer is not one.
pub const MAX_TOKEN: usize = 4096;

/// What a token value keeps as it is in a query string: RFC 3986's unreserved characters and
/// the sub-delimiters tokens are made of (`~ = ! * / :` and `,`), so that a carried token reads
/// like the one the middleware wrote; everything else is percent-encoded.
const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'\'');

/// `name=value` for a query string.
pub fn pair(name: &str, value: &str) -> String {
    format!("{name}={}", utf8_percent_encode(value, VALUE))
}

/// The value of `name` in the query string, else in the `Cookie` header; percent-decoded
/// (`+` is left as it is: tokens are not form-encoded). A value that is not UTF-8 once
/// decoded, or longer than [`MAX_TOKEN`], counts as present but empty (so it is refused as
/// malformed, not as missing).
pub fn find(query: Option<&str>, cookie: Option<&str>, name: &str) -> Option<String> {
    let in_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|p| p.split_once('=').or(Some((p, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    });
    let in_cookie = || {
        cookie.and_then(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.trim_matches('"'))
        })
    };
    let raw = in_query.or_else(in_cookie)?;
    if raw.len() > MAX_TOKEN * 3 {
        return Some(String::new());
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map(|v| v.into_owned())
        .unwrap_or_default();
    Some(if decoded.len() > MAX_TOKEN {
        String::new()
    } else {
        decoded
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_in_the_query_then_the_cookie_and_decoded() {
        let q = Some("a=1&hdnts=exp=9~acl=%2Fnews%2F*~hmac=ab&b=2");
        assert_eq!(
            find(q, None, "hdnts").as_deref(),
            Some("exp=9~acl=/news/*~hmac=ab")
        );
        let cookie = Some("x=y; hdnts=\"exp=1~hmac=00\"; z=1");
        assert_eq!(
            find(None, cookie, "hdnts").as_deref(),
            Some("exp=1~hmac=00")
        );
        assert_eq!(
            find(Some("a=1"), cookie, "hdnts").as_deref(),
            Some("exp=1~hmac=00")
        );
        assert_eq!(find(Some("a=1"), None, "hdnts"), None);
        assert_eq!(find(Some("hdnts"), None, "hdnts").as_deref(), Some(""));
        assert_eq!(
            find(Some("hdnts=%ff%fe"), None, "hdnts").as_deref(),
            Some("")
        );
        let long = format!("hdnts={}", "a".repeat(MAX_TOKEN + 1));
        assert_eq!(find(Some(&long), None, "hdnts").as_deref(), Some(""));
    }

    #[test]
    fn a_carried_token_keeps_its_delimiters_and_encodes_the_rest() {
        assert_eq!(
            pair("hdnts", "exp=9~acl=/news/*!/sports/*~id=a b&c~hmac=ab"),
            "hdnts=exp=9~acl=/news/*!/sports/*~id=a%20b%26c~hmac=ab"
        );
        let back = find(Some(&pair("t", "id=a+b %~x")), None, "t");
        assert_eq!(back.as_deref(), Some("id=a+b %~x"));
    }
}
