//! Carrying a playlist request's token to the files the playlist names: players resolve a
//! playlist's URIs against the playlist's URL without its query string, so the token must be
//! written into each URI (HLS's way; Akamai and nginx setups do the same).

/// `text`, a playlist served for `path` (`/news/index.m3u8`), with `query(PATH)` appended to
/// every URI it names, where PATH is the path that URI names: URI lines, and `URI="..."`
/// attributes of the tags that name media (not of keys or the steering server, which are
/// not the node's to authorise).
pub fn playlist(text: &str, path: &str, mut query: impl FnMut(&str) -> String) -> String {
    let dir = &path[..path.rfind('/').map_or(0, |at| at + 1)];
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        if body.is_empty() {
            out.push_str(line);
        } else if let Some(tag) = body.strip_prefix('#') {
            out.push_str(&tag_with_tokens(tag, dir, &mut query));
            out.push_str(end);
        } else {
            out.push_str(&with_query(body, dir, &mut query));
            out.push_str(end);
        }
    }
    out
}

/// `text`, a playlist, with the query parameters `params` taken out of every URI (and of
/// media tags' `URI` attributes): what an edge does to a playlist its origin wrote the edge's
/// own token into, before it carries each viewer's.
pub fn strip(text: &str, params: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        if body.is_empty() {
            out.push_str(line);
            continue;
        }
        if body.starts_with('#') {
            out.push_str(&rewrite_uri_attribute(body, |uri| without(uri, params)));
        } else {
            out.push_str(&without(body, params));
        }
        out.push_str(end);
    }
    out
}

/// `uri` without the query parameters `params` (and without `?` when none is left).
fn without(uri: &str, params: &[&str]) -> String {
    let Some((base, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default();
            !params.contains(&name)
        })
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// Tags whose `URI` attribute names a file the node serves.
const MEDIA_TAGS: [&str; 6] = [
    "EXT-X-MEDIA:",
    "EXT-X-MAP:",
    "EXT-X-I-FRAME-STREAM-INF:",
    "EXT-X-PART:",
    "EXT-X-PRELOAD-HINT:",
    "EXT-X-RENDITION-REPORT:",
];

/// `#` and `tag`, its `URI` attribute (if a media tag's) carrying the token.
fn tag_with_tokens(tag: &str, dir: &str, query: &mut impl FnMut(&str) -> String) -> String {
    rewrite_uri_attribute(&format!("#{tag}"), |uri| with_query(uri, dir, query))
}

/// `line`, a tag, with the value of its `URI` attribute rewritten by `rewrite` if it is a
/// media tag's.
fn rewrite_uri_attribute(line: &str, mut rewrite: impl FnMut(&str) -> String) -> String {
    let tag = &line[1..];
    let Some(name) = MEDIA_TAGS.iter().find(|t| tag.starts_with(**t)) else {
        return line.to_owned();
    };
    // The attribute named exactly URI: at the start of the list or after a comma.
    let list = &tag[name.len()..];
    let at = if list.starts_with("URI=\"") {
        Some(0)
    } else {
        list.find(",URI=\"").map(|i| i + 1)
    };
    let Some(at) = at else {
        return line.to_owned();
    };
    let value_start = 1 + name.len() + at + "URI=\"".len();
    let Some(len) = line[value_start..].find('"') else {
        return line.to_owned();
    };
    let uri = &line[value_start..value_start + len];
    format!(
        "{}{}{}",
        &line[..value_start],
        rewrite(uri),
        &line[value_start + len..]
    )
}

/// `uri` with the token for the path it names (relative to `dir`).
fn with_query(uri: &str, dir: &str, query: &mut impl FnMut(&str) -> String) -> String {
    let target = path_of(uri, dir);
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", query(&target))
}

/// The path a URI names, from a playlist in `dir`: an absolute URL's path, an absolute path,
/// or a relative one under `dir` (`../` steps taken).
fn path_of(uri: &str, dir: &str) -> String {
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map_or("/".to_owned(), |at| rest[at..].to_owned());
    }
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let mut segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for part in uri.split('/') {
        match part {
            ".." => {
                segments.pop();
            }
            "." => {}
            p => segments.push(p),
        }
    }
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_s_token_is_taken_out_and_the_rest_of_the_query_kept() {
        let text = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"a.m3u8?hdnts=x\"\nseg1.ts?hdnts=exp=1~hmac=00\nseg2.ts?a=1&hdnts=y&b=2\nseg3.ts\n";
        assert_eq!(
            strip(text, &["hdnts"]),
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"a.m3u8\"\nseg1.ts\nseg2.ts?a=1&b=2\nseg3.ts\n"
        );
        assert_eq!(
            strip("seg.ts?md5=a&expires=1", &["md5", "expires"]),
            "seg.ts"
        );
    }

    #[test]
    fn every_media_uri_gets_the_token_for_its_own_path() {
        let master = "#EXTM3U\n\
#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://steer/live?x=1\",PATHWAY-ID=\"ams\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,PATHWAY-ID=\"ams\"\n\
360p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,PATHWAY-ID=\"fra\"\n\
http://fra.live.example.net:8080/sports/360p/index.m3u8\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\n\
#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys/k1\"\n";
        let out = playlist(master, "/sports/index.m3u8", |p| format!("t={p}"));
        let expected = "#EXTM3U\n\
#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://steer/live?x=1\",PATHWAY-ID=\"ams\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,PATHWAY-ID=\"ams\"\n\
360p/index.m3u8?t=/sports/360p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,PATHWAY-ID=\"fra\"\n\
http://fra.live.example.net:8080/sports/360p/index.m3u8?t=/sports/360p/index.m3u8\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8?t=/sports/audio/en.m3u8\"\n\
#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys/k1\"\n";
        assert_eq!(out, expected);
        let media = "#EXTM3U\r\n#EXTINF:2.0,\r\nseg7.ts?a=1\r\n\r\n#EXTINF:2.0,\r\n../news/seg8.ts";
        assert_eq!(
            playlist(media, "/news/index.m3u8", |p| format!("t={p}")),
            "#EXTM3U\r\n#EXTINF:2.0,\r\nseg7.ts?a=1&t=/news/seg7.ts\r\n\r\n#EXTINF:2.0,\r\n../news/seg8.ts?t=/news/seg8.ts"
        );
    }
}
