//! The HTTP side of the console: what a request carries (language,
//! HTTPS behind a proxy, its query), cookies and forms, and the answers with
//! the console's security headers. The pages and routing are in `mod.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{HeaderMap, Response, StatusCode};
use maud::Markup;

use super::auth::{Role, Signed};
use super::i18n::{fill, Lang, Texts};
use super::pages::{self, Frame};
use crate::config::Config;
use crate::http::Reply;

/// Largest form body accepted (a token, a CSRF token and a filter).
const MAX_FORM_BYTES: usize = 8 * 1024;
pub(super) const SESSION_COOKIE: &str = "hookrelay_session";
const LANG_COOKIE: &str = "hookrelay_lang";
/// No inline script or style, nothing from elsewhere, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What one request carries that every page needs.
pub(super) struct Context {
    pub(super) config: Arc<Config>,
    pub(super) lang: Lang,
    /// Set the language cookie in the answer (it was chosen by `?lang=`).
    pub(super) lang_chosen: bool,
    /// Reached over HTTPS through a trusted proxy: the cookie gets `Secure`.
    pub(super) secure: bool,
    pub(super) query: Vec<(String, String)>,
    pub(super) here: String,
}

impl Context {
    pub(super) fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub(super) fn frame<'a>(&'a self, signed: Option<&'a Signed>) -> Frame<'a> {
        Frame {
            lang: self.lang,
            signed: signed.map(|s| (&s.role, s.csrf.as_str())),
            tz: &self.config.server.time_zone,
            here: self.here.clone(),
        }
    }

    pub(super) fn t(&self) -> &'static Texts {
        self.lang.texts()
    }

    /// An HTML answer with the console's security headers.
    pub(super) fn page(&self, status: StatusCode, markup: Markup) -> Reply {
        let mut response = Response::new(Full::new(Bytes::from(markup.into_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        secure_headers(headers);
        if self.lang_chosen {
            let cookie = format!(
                "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{}",
                self.lang.code(),
                if self.secure { "; Secure" } else { "" }
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.append(SET_COOKIE, value);
            }
        }
        response
    }

    pub(super) fn message(&self, status: StatusCode, signed: Option<&Signed>, text: &str) -> Reply {
        self.page(status, pages::message(&self.frame(signed), text))
    }

    pub(super) fn not_found(&self, signed: &Signed) -> Reply {
        self.message(StatusCode::NOT_FOUND, Some(signed), self.t().not_found)
    }

    pub(super) fn read_failed(&self, signed: &Signed, err: impl std::fmt::Display) -> Reply {
        log::error!("console: reading the database: {err}");
        self.message(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(signed),
            &fill(self.t().read_failed, err),
        )
    }

    /// Who may see what: `None` for everything (the admin).
    pub(super) fn visible(&self, role: &Role) -> Option<Vec<String>> {
        match role {
            Role::Admin => None,
            Role::Viewer(_) => Some(
                self.config
                    .processings
                    .iter()
                    .filter(|p| self.may_see(role, &p.name))
                    .map(|p| p.name.clone())
                    .collect(),
            ),
        }
    }

    /// Whether `role` may see `processing`: a viewer only the configured
    /// processings its patterns match.
    pub(super) fn may_see(&self, role: &Role, processing: &str) -> bool {
        match role {
            Role::Admin => true,
            Role::Viewer(name) => {
                self.config.processing(processing).is_some()
                    && self
                        .config
                        .console
                        .viewers
                        .iter()
                        .any(|v| &v.name == name && v.sees(processing))
            }
        }
    }
}

impl Context {
    /// Whether `role` may see webhook addresses, which carry the token:
    /// the admin, and a viewer whose config says `show_address = true`.
    pub(super) fn may_see_address(&self, role: &Role) -> bool {
        match role {
            Role::Admin => true,
            Role::Viewer(name) => self
                .config
                .console
                .viewers
                .iter()
                .any(|v| &v.name == name && v.show_address),
        }
    }
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(super) fn redirect(location: &str, cookie: Option<String>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    secure_headers(response.headers_mut());
    response
}

pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

pub(super) fn static_file(body: &'static str, content_type: &'static str) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    response
        .headers_mut()
        .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// What every page needs from the request and the live config.
pub(super) fn context(config: Arc<Config>, parts: &hyper::http::request::Parts, remote: SocketAddr) -> Context {
    let path = parts.uri.path();
    let mut query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let chosen = query
        .iter()
        .find(|(k, _)| k == "lang")
        .and_then(|(_, v)| Lang::parse(v));
    query.retain(|(k, _)| k != "lang");
    let lang = chosen
        .or_else(|| cookie(&parts.headers, LANG_COOKIE).and_then(Lang::parse))
        .unwrap_or_else(|| {
            Lang::from_accept_language(parts.headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
        });
    let from_proxy = config
        .server
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&remote.ip().to_canonical()));
    let secure = from_proxy
        && parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let rest = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().filter(|(k, _)| k != "fragment"))
        .finish();
    let here = if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{rest}")
    };
    Context {
        config,
        lang,
        lang_chosen: chosen.is_some(),
        secure,
        query,
        here,
    }
}

pub(super) fn session_cookie(id: &str, cx: &Context) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        cx.config.console.session_lifetime.as_secs(),
        if cx.secure { "; Secure" } else { "" }
    )
}

pub(super) async fn read_form(body: Incoming) -> Result<BTreeMap<String, String>, Reply> {
    match Limited::new(body, MAX_FORM_BYTES).collect().await {
        Ok(collected) => Ok(url::form_urlencoded::parse(&collected.to_bytes())
            .into_owned()
            .collect()),
        Err(_) => Err(crate::http::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the form is larger than 8 KiB or was cut off\n",
        )),
    }
}
