//! Sentences with a count in them, in the form the count takes: CLDR's
//! plural rules pick the category (Russian: one, few, many, other), and
//! each sentence has a form per category, as translators write them.

use intl_pluralrules::{PluralCategory, PluralRuleType, PluralRules};

use super::Lang;

/// A sentence with a count. Each variant's forms are in [`forms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The question before a bulk replay.
    ReplayAsk,
    /// After a bulk replay: operations queued again.
    ReplayQueued,
    /// After a bulk replay: operations the replay left alone.
    ReplayRefused,
    /// A replay's progress: operations still waiting.
    StillWaiting,
    /// After one operation's replay: its deliveries queued.
    DeliveriesQueued,
    /// Waiting deliveries rendered again with the current config.
    DeliveriesRequeued,
    /// Waiting deliveries cancelled.
    DeliveriesCancelled,
}

#[cfg(test)]
impl Counted {
    /// Every sentence, for the tests.
    pub const ALL: &[Counted] = &[
        Counted::ReplayAsk,
        Counted::ReplayQueued,
        Counted::ReplayRefused,
        Counted::StillWaiting,
        Counted::DeliveriesQueued,
        Counted::DeliveriesRequeued,
        Counted::DeliveriesCancelled,
    ];
}

/// `[one, few, many, other]` in Russian; `[one, other]` in English.
fn forms(lang: Lang, counted: Counted) -> &'static [&'static str] {
    match (lang, counted) {
        (Lang::Ru, Counted::ReplayAsk) => &[
            "Повторить {} операцию?",
            "Повторить {} операции?",
            "Повторить {} операций?",
            "Повторить {} операции?",
        ],
        (Lang::En, Counted::ReplayAsk) => &["Replay {} operation?", "Replay {} operations?"],
        (Lang::Ru, Counted::ReplayQueued) => &[
            "{} операция снова в очереди.",
            "{} операции снова в очереди.",
            "{} операций снова в очереди.",
            "{} операции снова в очереди.",
        ],
        (Lang::En, Counted::ReplayQueued) => &["{} operation queued again.", "{} operations queued again."],
        (Lang::Ru, Counted::ReplayRefused) => &[
            "{} операция не повторена:",
            "{} операции не повторены:",
            "{} операций не повторено:",
            "{} операции не повторено:",
        ],
        (Lang::En, Counted::ReplayRefused) => &["{} operation not replayed:", "{} operations not replayed:"],
        (Lang::Ru, Counted::StillWaiting) => &[
            "Ещё ждёт отправки {} операция.",
            "Ещё ждут отправки {} операции.",
            "Ещё ждут отправки {} операций.",
            "Ещё ждут отправки {} операции.",
        ],
        (Lang::En, Counted::StillWaiting) => &[
            "{} operation still waiting to be sent.",
            "{} operations still waiting to be sent.",
        ],
        (Lang::Ru, Counted::DeliveriesQueued) => &[
            "{} доставка снова в очереди.",
            "{} доставки снова в очереди.",
            "{} доставок снова в очереди.",
            "{} доставки снова в очереди.",
        ],
        (Lang::En, Counted::DeliveriesQueued) => &["{} delivery queued again.", "{} deliveries queued again."],
        (Lang::Ru, Counted::DeliveriesRequeued) => &[
            "{} доставка будет отправлена с текущими настройками.",
            "{} доставки будут отправлены с текущими настройками.",
            "{} доставок будет отправлено с текущими настройками.",
            "{} доставки будут отправлены с текущими настройками.",
        ],
        (Lang::En, Counted::DeliveriesRequeued) => &[
            "{} delivery will go with the current settings.",
            "{} deliveries will go with the current settings.",
        ],
        (Lang::Ru, Counted::DeliveriesCancelled) => &[
            "{} доставка отменена и не будет отправлена.",
            "{} доставки отменены и не будут отправлены.",
            "{} доставок отменено, они не будут отправлены.",
            "{} доставки отменено, они не будут отправлены.",
        ],
        (Lang::En, Counted::DeliveriesCancelled) => &[
            "{} delivery cancelled; it will not be sent.",
            "{} deliveries cancelled; they will not be sent.",
        ],
    }
}

/// `counted` with `n` in it, in the form `n` takes in `lang`.
pub fn say(lang: Lang, counted: Counted, n: u64) -> String {
    let forms = forms(lang, counted);
    let category = rules(lang).and_then(|rules| rules.select(n).ok());
    let at = match (lang, category) {
        (Lang::Ru, Some(PluralCategory::ONE)) => 0,
        (Lang::Ru, Some(PluralCategory::FEW)) => 1,
        (Lang::Ru, Some(PluralCategory::MANY)) => 2,
        (Lang::En, Some(PluralCategory::ONE)) => 0,
        _ => forms.len() - 1,
    };
    forms[at].replacen("{}", &n.to_string(), 1)
}

fn rules(lang: Lang) -> Option<PluralRules> {
    let id: unic_langid::LanguageIdentifier = lang.code().parse().ok()?;
    PluralRules::create(id, PluralRuleType::CARDINAL).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Russian counts take the form CLDR gives them, 11-14 included.
    #[test]
    fn russian_counts_take_their_form() {
        let ask = |n| say(Lang::Ru, Counted::ReplayAsk, n);
        assert_eq!(ask(1), "Повторить 1 операцию?");
        assert_eq!(ask(2), "Повторить 2 операции?");
        assert_eq!(ask(5), "Повторить 5 операций?");
        assert_eq!(ask(11), "Повторить 11 операций?");
        assert_eq!(ask(21), "Повторить 21 операцию?");
        assert_eq!(ask(42), "Повторить 42 операции?");
        assert_eq!(ask(0), "Повторить 0 операций?");
        assert_eq!(say(Lang::En, Counted::ReplayAsk, 1), "Replay 1 operation?");
        assert_eq!(say(Lang::En, Counted::ReplayAsk, 42), "Replay 42 operations?");
        for counted in Counted::ALL {
            assert_eq!(forms(Lang::Ru, *counted).len(), 4, "{counted:?}");
            assert_eq!(forms(Lang::En, *counted).len(), 2, "{counted:?}");
        }
    }
}
