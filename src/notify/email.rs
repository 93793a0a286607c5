//! Email through SMTP (plain, STARTTLS or implicit TLS) or a sendmail binary.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::{SendmailTransport, SmtpTransport, Transport};

use super::message::Message;
use crate::config::{Email, EmailTransport};

/// An SMTP conversation may take this long before it counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `message` to every recipient; the error is one line, without secrets.
pub fn send(email: &Email, message: &Message) -> Result<(), String> {
    let from = email.from.parse().map_err(|e| format!("email_from: {e}"))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(message.subject.as_str())
        // Mail without one is scored as spam and cannot be threaded.
        .message_id(None)
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(to.parse().map_err(|e| format!("email_to `{to}`: {e}"))?);
    }
    let mail = builder
        .body(message.body.clone())
        .map_err(|e| format!("building the message: {e}"))?;
    match &email.transport {
        EmailTransport::Smtp(url) => SmtpTransport::from_url(url.expose())
            .map_err(|e| format!("smtp URL: {e}"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build()
            .send(&mail)
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}")),
        EmailTransport::Sendmail(path) => SendmailTransport::new_with_command(path)
            .send(&mail)
            .map_err(|e| format!("sendmail {}: {e}", path.display())),
    }
}
