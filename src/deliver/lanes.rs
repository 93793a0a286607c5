//! Limits finer than a receiver's: a delivery may have to take turns in
//! lanes of its own besides its receiver's rate. Telegram's Bot API limits
//! a bot to about 30 messages a second, a chat to about one a second and a
//! group to 20 a minute (core.telegram.org/bots/faq, "My bot is hitting
//! limits, how do I avoid this?"). Every Telegram message has one receiver,
//! api.telegram.org, so those limits are lanes, read from the request
//! itself: its path names the bot (`/bot<id>:<token>/`), its body the chat.
//! Every action using the same bot, in any processing, shares its lane.

use std::time::Duration;

use crate::config::Rate;
use crate::model::DeliveryRequest;

/// One lane a delivery takes a turn in.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// What shares the turn: `telegram bot 123`, `telegram chat 123 -100…`.
    pub key: String,
    pub rate: Rate,
    pub burst: u32,
}

/// A bot's messages in all chats.
const BOT_RATE: Rate = Rate {
    count: 30,
    per: Duration::from_secs(1),
};
/// Messages to one chat.
const CHAT_RATE: Rate = Rate {
    count: 1,
    per: Duration::from_secs(1),
};
/// Messages to one group (a negative chat id: groups, supergroups, channels).
const GROUP_RATE: Rate = Rate {
    count: 20,
    per: Duration::from_secs(60),
};

/// The lanes `request` takes turns in besides its receiver's; none for
/// anything but a message through a Telegram bot.
pub fn lanes(request: &DeliveryRequest) -> Vec<Lane> {
    let Some(bot) = telegram_bot(&request.url) else {
        return Vec::new();
    };
    let chat = request
        .body
        .as_deref()
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
        .and_then(|message| match message.get("chat_id")? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let lane = |key: String, rate: Rate| Lane { key, rate, burst: 1 };
    let mut lanes = vec![lane(format!("telegram bot {bot}"), BOT_RATE)];
    if let Some(chat) = chat {
        lanes.push(lane(format!("telegram chat {bot} {chat}"), CHAT_RATE));
        if chat.starts_with('-') {
            lanes.push(lane(format!("telegram group {bot} {chat}"), GROUP_RATE));
        }
    }
    lanes
}

/// The bot's number in a Bot API URL's path, `/bot<number>:<token>/<method>`.
fn telegram_bot(url: &str) -> Option<&str> {
    let path = url.split_once("://")?.1;
    let path = &path[path.find('/')?..];
    path.split('/').find_map(|segment| {
        let (id, _) = segment.strip_prefix("bot")?.split_once(':')?;
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str, body: &str) -> DeliveryRequest {
        DeliveryRequest {
            method: "POST".into(),
            url: url.into(),
            body: Some(body.as_bytes().to_vec()),
            ..DeliveryRequest::sample("a")
        }
    }

    /// A group message takes three lanes, a private chat's two, the same
    /// bot's lane for both; other requests none.
    #[test]
    fn telegram_messages_take_the_bots_and_the_chats_lanes() {
        let url = "https://api.telegram.org/bot123:AAAAAAAAAAAAAAAAAAAAAAAA/sendMessage";
        let group = lanes(&request(url, r#"{"chat_id":-1001234,"text":"x"}"#));
        let keys: Vec<&str> = group.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "telegram bot 123",
                "telegram chat 123 -1001234",
                "telegram group 123 -1001234"
            ]
        );
        assert_eq!(group[2].rate, GROUP_RATE);
        let private = lanes(&request(url, r#"{"chat_id":"42","text":"x"}"#));
        assert_eq!(private.len(), 2);
        assert_eq!(private[0], group[0]);
        assert!(lanes(&request("https://h.example/bot/x", "{}")).is_empty());
        assert!(lanes(&request("https://plarin.example/pb?bot1:x=1", "{}")).is_empty());
    }
}
