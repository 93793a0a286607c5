//! What a destination platform's refusal means and what to do about it: the
//! notes a destination kind's rules attach to an answer (see
//! [`super::response::NoteRule`]), said with the failure in the attempt's
//! error, the console and the failure notification.
//!
//! Sources, per note: Telegram's Bot API (core.telegram.org/bots/api,
//! "Making requests" and `ResponseParameters`: `ok`, `description`,
//! `parameters.migrate_to_chat_id`); Bitrix24's REST errors
//! (apidocs.bitrix24.com, "Errors": `error`, `error_description`,
//! `OVERLOAD_LIMIT` in dev.1c-bitrix.ru/rest_help/rest_sum/index.php).

use serde::{Deserialize, Serialize};

/// Which explanation a note gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum About {
    // Keep ALL in step.
    /// Telegram 403: the bot was blocked, removed from the chat, or the
    /// chat is gone.
    TelegramBlocked,
    /// Telegram 400 with `migrate_to_chat_id`: the group became a supergroup.
    TelegramMigrated,
    /// Telegram 401: the token is not a bot's.
    TelegramToken,
    /// Any other Telegram refusal, with its `description`.
    TelegramSaid,
    /// Bitrix24 refused the call, with its `error_description`.
    BitrixSaid,
    /// Bitrix24 blocked the webhook for overload (`OVERLOAD_LIMIT`).
    BitrixOverload,
    /// Bitrix24 401: the webhook's address is no longer valid.
    BitrixWebhook,
    /// Bitrix24 403: the webhook lacks the permission the method needs.
    BitrixScope,
    /// amoCRM 401: the long-lived token was revoked or has expired.
    AmoToken,
    /// amoCRM 403, code 113: the account takes API calls only from listed addresses.
    AmoAddress,
    /// Any other amoCRM 403, with its `detail`.
    AmoForbidden,
    /// amoCRM 400 with `validation-errors`: the first error's `detail`.
    AmoInvalid,
    /// Any other amoCRM refusal, with its `detail`.
    AmoSaid,
}

/// A note on one answer: the explanation and the value it quotes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub about: About,
    /// The body's value the rule pointed at (a description, a new chat id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl About {
    /// Every explanation, for tests that say each one.
    pub const ALL: &'static [About] = &[
        About::TelegramBlocked,
        About::TelegramMigrated,
        About::TelegramToken,
        About::TelegramSaid,
        About::BitrixSaid,
        About::BitrixOverload,
        About::BitrixWebhook,
        About::BitrixScope,
        About::AmoToken,
        About::AmoAddress,
        About::AmoForbidden,
        About::AmoInvalid,
        About::AmoSaid,
    ];
}

impl Note {
    /// The quoted value, or nothing: "" when the body had none.
    fn value(&self) -> &str {
        self.value.as_deref().unwrap_or("")
    }

    /// `: value` when there is one.
    fn colon(&self) -> String {
        self.value.as_deref().map_or_else(String::new, |v| format!(": {v}"))
    }

    /// In Russian, for the console and `server.language = "ru"`.
    pub fn russian(&self) -> String {
        let value = self.value();
        let colon = self.colon();
        match self.about {
            About::TelegramBlocked => format!(
                "Telegram не пускает бота в чат{colon}. Бота заблокировали, удалили из чата, или чата больше нет: добавьте бота в чат снова, затем повторите отправку"
            ),
            About::TelegramMigrated => format!(
                "группа в Telegram стала супергруппой с номером {value}: впишите chat_id = \"{value}\" в это действие, перечитайте настройки и повторите отправку"
            ),
            About::TelegramToken => {
                format!("Telegram не знает такого bot_token (401){colon}. Возьмите токен у @BotFather заново")
            }
            About::TelegramSaid => format!("Telegram отказал{colon}"),
            About::BitrixSaid => format!("Битрикс24 отказал{colon}"),
            About::BitrixOverload => format!(
                "Битрикс24 заблокировал вебхук из-за нагрузки{colon}. Администратор портала получил сообщение; напишите в поддержку Битрикс24. Отправка повторяется"
            ),
            About::BitrixWebhook => format!(
                "Битрикс24 не принимает адрес вебхука (401){colon}. Создайте новый входящий вебхук и впишите его адрес в webhook_url"
            ),
            About::BitrixScope => format!(
                "у вебхука Битрикс24 нет нужного права (403){colon}. Добавьте вебхуку право на CRM (crm) в настройках входящего вебхука"
            ),
            About::AmoToken => format!(
                "amoCRM не принимает access_token (401){colon}. Долгосрочный токен отозван или истёк: выпустите новый в настройках интеграции (amoCRM → amoМаркет → ваша интеграция → Ключи и доступы) и впишите его в access_token"
            ),
            About::AmoAddress => format!(
                "amoCRM не принимает запросы с адреса этого сервера{colon} (код 113). Добавьте адрес в разрешённые в настройках безопасности аккаунта amoCRM"
            ),
            About::AmoForbidden => format!("amoCRM запретил запрос (403){colon}. Проверьте права пользователя интеграции"),
            About::AmoInvalid => format!("amoCRM не принял данные{colon}"),
            About::AmoSaid => format!("amoCRM отказал{colon}"),
        }
    }
}

impl std::fmt::Display for Note {
    /// In English, for the CLI, logs and the attempt's error.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.value();
        let colon = self.colon();
        match self.about {
            About::TelegramBlocked => write!(
                f,
                "Telegram refuses the bot in this chat{colon}. The bot was blocked, removed from the chat, or the chat is gone: add the bot to the chat again, then replay"
            ),
            About::TelegramMigrated => write!(
                f,
                "the Telegram group became a supergroup with the id {value}: set chat_id = \"{value}\" in this action, reload, then replay"
            ),
            About::TelegramToken => write!(
                f,
                "Telegram knows no bot by this bot_token (401){colon}. Get the token from @BotFather again"
            ),
            About::TelegramSaid => write!(f, "Telegram refused it{colon}"),
            About::BitrixSaid => write!(f, "Bitrix24 refused it{colon}"),
            About::BitrixOverload => write!(
                f,
                "Bitrix24 blocked the webhook for overload{colon}. The portal's administrator has a message; contact Bitrix24 support. Retried meanwhile"
            ),
            About::BitrixWebhook => write!(
                f,
                "Bitrix24 does not accept the webhook's address (401){colon}. Make a new incoming webhook and put its address in webhook_url"
            ),
            About::BitrixScope => write!(
                f,
                "the Bitrix24 webhook lacks the permission the method needs (403){colon}. Give the incoming webhook the CRM (crm) permission"
            ),
            About::AmoToken => write!(
                f,
                "amoCRM does not accept the access_token (401){colon}. The long-lived token was revoked or has expired: make a new one in the integration's settings (amoCRM → amoMarket → your integration → Keys and scopes) and put it in access_token"
            ),
            About::AmoAddress => write!(
                f,
                "amoCRM refuses calls from this server's address{colon} (code 113). Allow the address in the amoCRM account's security settings"
            ),
            About::AmoForbidden => write!(f, "amoCRM forbids the call (403){colon}. Check the integration user's rights"),
            About::AmoInvalid => write!(f, "amoCRM did not accept the data{colon}"),
            About::AmoSaid => write!(f, "amoCRM refused it{colon}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::response::Judged;
    use crate::model::said::{Lang, Said};

    /// Each note is said in both languages, after the verdict, quoting its value.
    #[test]
    fn every_note_is_said_after_the_verdict() {
        for &about in About::ALL {
            let answer = Said::Answer {
                verdict: Judged::StatusRefused { status: 400 },
                note: Some(Note {
                    about,
                    value: Some("-1001234567890".into()),
                }),
            };
            let en = answer.say(Lang::En);
            let ru = answer.say(Lang::Ru);
            assert!(
                en.starts_with("answered 400: not an accepted status, not retried; "),
                "{en}"
            );
            assert!(ru.starts_with("ответ 400"), "{ru}");
            assert!(
                en.contains("-1001234567890") && ru.contains("-1001234567890"),
                "{about:?}: {en} / {ru}"
            );
            assert!(!en.chars().any(|c| ('а'..='я').contains(&c)), "{en}");
        }
        let migrated = Note {
            about: About::TelegramMigrated,
            value: Some("-1009".into()),
        };
        assert!(migrated.to_string().contains(r#"set chat_id = "-1009""#));
        // Without a value, no dangling colon.
        let bare = Note {
            about: About::BitrixSaid,
            value: None,
        };
        assert_eq!(bare.to_string(), "Bitrix24 refused it");
    }
}
