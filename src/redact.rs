//! Masking secrets wherever a request or a config value is shown: logs,
//! history, `try`, `check`, notifications and config errors. One place, so
//! every view masks the same things the same way.

use url::Url;

/// Query parameter names (lower-cased substrings) whose values are masked.
const SECRET_PARAMS: &[&str] = &["token", "key", "secret", "password", "passwd", "auth", "sig"];
/// Header names (lower-cased substrings) whose values are masked.
const SECRET_HEADERS: &[&str] = &["authorization", "token", "key", "secret", "password", "cookie"];
/// What a masked value prints as.
pub const MASK: &str = "MASKED";

fn is_secret_name(name: &str, words: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// Whether a query parameter called `name` carries a secret.
pub fn is_secret_param(name: &str) -> bool {
    is_secret_name(name, SECRET_PARAMS)
}

/// Whether a header called `name` carries a secret.
pub fn is_secret_header(name: &str) -> bool {
    is_secret_name(name, SECRET_HEADERS)
}

/// A path with the secrets platforms put in paths masked: a Telegram bot's
/// token (`/bot123456:AAE.../sendMessage` keeps the bot's number) and a
/// Bitrix24 incoming webhook's code (`/rest/1/abc123/` keeps the user).
pub fn path(path: &str) -> String {
    let mut out = Vec::new();
    let mut after_rest = 0;
    for segment in path.split('/') {
        let masked = match segment.strip_prefix("bot").and_then(|t| t.split_once(':')) {
            Some((id, _)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => format!("bot{id}:{MASK}"),
            _ if after_rest == 2 && !segment.is_empty() => MASK.to_string(),
            _ => segment.to_string(),
        };
        after_rest = match (after_rest, segment) {
            (_, "rest") => 1,
            (1, user) if !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit()) => 2,
            _ => 0,
        };
        out.push(masked);
    }
    out.join("/")
}

/// The URL with its password, path secrets and any secret-looking query
/// values masked.
pub fn url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some(MASK));
    }
    let masked = path(url.path());
    if masked != url.path() {
        shown.set_path(&masked);
    }
    // Rewritten only when there is something to mask: the form encoder
    // would re-encode what it does not split on (`;` in VK Ads' links), and
    // what is shown must be what is sent.
    if url.query_pairs().any(|(name, _)| is_secret_param(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret_param(&name) {
                    MASK.into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.into()
}

/// Masks a URL given as text; text that is not a URL is masked whole.
pub fn url_text(text: &str) -> String {
    Url::parse(text).map_or_else(|_| MASK.to_string(), |u| url(&u))
}

/// Masks what looks like a URL's password or secret query values in text
/// that may not parse as a URL (a template, or a broken value in a config
/// error), leaving the rest exactly as written.
pub fn url_like_text(text: &str) -> String {
    let (before_fragment, fragment) = match text.find('#') {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let (base, query) = match before_fragment.find('?') {
        Some(at) => (&before_fragment[..at], Some(&before_fragment[at + 1..])),
        None => (before_fragment, None),
    };
    let mut out = mask_password(base);
    if let Some(at) = out
        .find("://")
        .map(|s| s + 3)
        .and_then(|h| out[h..].find('/').map(|p| h + p))
    {
        let masked = path(&out[at..]);
        out.replace_range(at.., &masked);
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_param(name) => format!("{name}={MASK}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out.push_str(fragment);
    out
}

/// `scheme://user:password@host/path` with the password masked.
fn mask_password(base: &str) -> String {
    let Some(scheme_end) = base.find("://") else {
        return base.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let authority = &base[authority_start..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!(
                "{}{user}:{MASK}{}",
                &base[..authority_start],
                &base[authority_start + at..]
            ),
            None => base.to_string(),
        },
        None => base.to_string(),
    }
}

/// A header value as logs may show it.
pub fn header<'a>(name: &str, value: &'a str) -> &'a str {
    if is_secret_header(name) {
        MASK
    } else {
        value
    }
}

/// A database URL with its password, if any, replaced: for logs and
/// status lines. The key=value form loses its `password=` pair.
pub fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("*****"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // The key=value form: drop the password pair.
        Err(_) => url
            .split_whitespace()
            .filter(|pair| !pair.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query with nothing secret is shown as sent, not re-encoded.
    #[test]
    fn a_query_without_secrets_is_left_as_sent() {
        let vk = "https://top-fwz1.mail.ru/tracker?id=1234567;e=RG%3A1500/paid;rb_clickid=abc";
        assert_eq!(url_text(vk), vk);
    }

    /// A Telegram bot's token and a Bitrix24 webhook's code are masked in
    /// paths, parsed or as text; the bot's number and the user stay.
    #[test]
    fn path_secrets_are_masked() {
        let telegram = "https://api.telegram.org/bot123456:AAEhBP0av28e-Bx_y/sendMessage";
        let shown = "https://api.telegram.org/bot123456:MASKED/sendMessage";
        assert_eq!(url_text(telegram), shown);
        assert_eq!(url_like_text(telegram), shown);
        let bitrix = "https://salon.bitrix24.ru/rest/1/x7k2p9q4w1z8/crm.lead.add.json";
        let shown = "https://salon.bitrix24.ru/rest/1/MASKED/crm.lead.add.json";
        assert_eq!(url_text(bitrix), shown);
        assert_eq!(url_like_text(bitrix), shown);
        assert_eq!(
            url_like_text("https://salon.bitrix24.ru/rest/1/x7k2p9q4w1z8/"),
            "https://salon.bitrix24.ru/rest/1/MASKED/"
        );
        // Paths that only look alike are left alone.
        for plain in [
            "https://h.example/bot/x",
            "https://h.example/rest/api/v1",
            "https://h.example/robots:1/x",
        ] {
            assert_eq!(url_text(plain), plain);
        }
    }

    /// Passwords in the authority are masked too.
    #[test]
    fn redacts_userinfo() {
        assert_eq!(
            url_text("https://u:pw@h.example/?apikey=1&a=2"),
            "https://u:MASKED@h.example/?apikey=MASKED&a=2"
        );
        assert_eq!(url_text("not a url"), MASK);
    }

    /// Text that is not a URL keeps its shape; only the secrets go.
    #[test]
    fn masks_url_like_text() {
        assert_eq!(
            url_like_text("ftp://u:p@ss@h.example/x?token=abc&id={{id}}&Api_Key=k#f"),
            "ftp://u:MASKED@h.example/x?token=MASKED&id={{id}}&Api_Key=MASKED#f"
        );
        assert_eq!(url_like_text("plarin.example/pb?sig=1"), "plarin.example/pb?sig=MASKED");
        assert_eq!(url_like_text("https://h.example/{{a}}"), "https://h.example/{{a}}");
        assert_eq!(url_like_text("https://user@h.example/"), "https://user@h.example/");
    }

    /// Secret header names are matched in any case.
    #[test]
    fn masks_secret_headers() {
        assert_eq!(header("X-Api-Key", "k"), MASK);
        assert_eq!(header("Accept", "k"), "k");
    }
}
