//! `[notify]`: email (SMTP or sendmail) and Telegram.

use super::*;

/// Checks an SMTP URL and returns it as lettre takes it. Credentials over
/// `smtp://` need `?tls=required` (STARTTLS or nothing), or an explicit
/// `?tls=none` for a password knowingly sent in clear; `opportunistic` is
/// refused with them too, since a man in the middle can strip STARTTLS.
/// `tls=none` is hookrelay's word, so it is removed before lettre sees it.
fn smtp_url(smtp: &Secret) -> Result<Secret, String> {
    let mut url = Url::parse(smtp.expose())
        .ok()
        .filter(|u| matches!(u.scheme(), "smtp" | "smtps"))
        .ok_or("must be an smtp:// or smtps:// URL")?;
    let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    match (url.scheme(), tls.as_deref()) {
        (_, None | Some("required" | "opportunistic" | "none")) => {}
        (_, Some(other)) => return Err(format!("tls=`{other}`: use required, opportunistic or none")),
    }
    match (url.scheme(), tls.as_deref()) {
        ("smtps", Some("none")) => return Err("smtps:// is TLS; tls=none contradicts it".into()),
        ("smtp", None | Some("opportunistic")) if has_credentials => {
            return Err(
                "a password over smtp:// without tls=required can cross the network in clear; \
                 use smtps://…:465 or smtp://…:587?tls=required, or add ?tls=none to send it in clear knowingly"
                    .into(),
            )
        }
        _ => {}
    }
    if tls.as_deref() == Some("none") {
        let rest: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "tls")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
    }
    Ok(Secret::new(url))
}

impl RawNotify {
    pub(super) fn resolve(self, base: &Path) -> Result<Notify, String> {
        let email = self.email(base)?;
        let telegram = self.telegram.map(RawTelegram::resolve).transpose()?;
        if email.is_none() && telegram.is_none() {
            return Err("notify: configure email (email_to, email_from, smtp or sendmail) or [notify.telegram]".into());
        }
        Ok(Notify {
            email,
            telegram,
            min_interval: self.min_interval.map_or(DEFAULT_MIN_INTERVAL, |d| d.0),
            include_fields: self.include_fields,
        })
    }

    pub(super) fn email(&self, base: &Path) -> Result<Option<Email>, String> {
        let transport = match (&self.smtp, &self.sendmail) {
            (Some(_), Some(_)) => return Err("notify: set either smtp or sendmail, not both".into()),
            (None, None) if self.email_to.is_empty() => return Ok(None),
            (None, None) => {
                return Err(
                    "notify: set smtp = \"smtps://user:password@host:465\" or sendmail = \"/usr/sbin/sendmail\"".into(),
                )
            }
            (Some(smtp), None) => EmailTransport::Smtp(smtp_url(smtp).map_err(|e| format!("notify.smtp: {e}"))?),
            (None, Some(path)) => EmailTransport::Sendmail(base.join(path)),
        };
        if self.email_to.is_empty() {
            return Err("notify.email_to: name at least one address".into());
        }
        for address in &self.email_to {
            address
                .parse::<lettre::Address>()
                .map_err(|e| format!("notify.email_to: `{address}`: {e}"))?;
        }
        let from = self
            .email_from
            .clone()
            .ok_or("notify.email_from: set the sender address, e.g. \"hookrelay@example.ru\"")?;
        from.parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("notify.email_from: `{from}`: {e}"))?;
        Ok(Some(Email {
            to: self.email_to.clone(),
            from,
            transport,
        }))
    }
}

impl RawTelegram {
    pub(super) fn resolve(self) -> Result<Telegram, String> {
        let text = self.api_url.as_deref().unwrap_or(DEFAULT_TELEGRAM_API);
        let api_url = Url::parse(text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                format!(
                    "notify.telegram.api_url: `{}` is not an http(s) URL",
                    redact::url_like_text(text)
                )
            })?;
        if self.chat_id.trim().is_empty() {
            return Err("notify.telegram.chat_id: must not be empty".into());
        }
        Ok(Telegram {
            bot_token: self.bot_token,
            chat_id: self.chat_id,
            api_url,
        })
    }
}
