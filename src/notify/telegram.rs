//! Telegram messages through the Bot API's `sendMessage`.

use std::io::Read;

use super::message::Message;
use crate::config::Telegram;
use crate::redact::MASK;

/// Telegram refuses messages longer than 4096 characters.
const MAX_CHARS: usize = 4000;

/// Sends `message` to the configured chat; the error never shows the bot token.
pub fn send(agent: &ureq::Agent, telegram: &Telegram, message: &Message) -> Result<(), String> {
    let token = telegram.bot_token.expose();
    let url = format!(
        "{}/bot{token}/sendMessage",
        telegram.api_url.as_str().trim_end_matches('/')
    );
    let mut text = format!("{}\n\n{}", message.subject, message.body);
    if let Some((cut, _)) = text.char_indices().nth(MAX_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    let payload = serde_json::json!({
        "chat_id": telegram.chat_id,
        "text": text,
        "disable_web_page_preview": true,
    });
    let hide = |e: String| e.replace(token, MASK);
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .send(payload.to_string())
        .map_err(|e| hide(format!("Telegram: {e}")))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let mut answer = Vec::new();
    let _ = response.body_mut().as_reader().take(300).read_to_end(&mut answer);
    Err(hide(format!(
        "Telegram answered HTTP {status}: {}",
        String::from_utf8_lossy(&answer)
    )))
}
