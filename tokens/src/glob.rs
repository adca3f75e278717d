//! ACL patterns: `*` matches any run of characters (slashes too), everything else itself.

/// Whether `path` matches `pattern`. Linear in practice: the classic two-pointer match that
/// backtracks only to the last `*`, so a hostile pattern or path cannot make it quadratic
/// beyond their lengths' product, and both are bounded by the token's length.
pub fn matches(pattern: &str, path: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), path.as_bytes());
    let (mut i, mut j) = (0, 0);
    // Where the last star was, and where the path stood when it was met.
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == s[j] {
            i += 1;
            j += 1;
        } else if let Some((at, from)) = star {
            // Let the star take one more character.
            i = at + 1;
            j = from + 1;
            star = Some((at, from + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_match_any_run_and_the_rest_matches_itself() {
        for (pattern, path, expected) in [
            ("/news/*", "/news/index.m3u8", true),
            ("/news/*", "/news/360p/seg1.ts", true),
            ("/news/*", "/news/", true),
            ("/news/*", "/news", false),
            ("/news/*", "/sports/index.m3u8", false),
            ("/*", "/anything/at/all", true),
            ("*", "", true),
            ("/news/index.m3u8", "/news/index.m3u8", true),
            ("/news/index.m3u8", "/news/index.m3u8x", false),
            ("/*/360p/*.ts", "/news/360p/seg1.ts", true),
            ("/*/360p/*.ts", "/news/180p/seg1.ts", false),
            ("/a*b*c", "/aXbYc", true),
            ("/a*b*c", "/aXbY", false),
            ("", "", true),
            ("", "/", false),
        ] {
            assert_eq!(matches(pattern, path), expected, "{pattern} {path}");
        }
        // No blow-up on patterns built to make naive matching exponential.
        let pattern = "*a".repeat(50) + "b";
        assert!(!matches(&pattern, &"a".repeat(2000)));
    }
}
