//! `kind = "metrica"`: rows for Yandex Metrica, gathered into one CSV
//! upload per `batch_every` or `batch_max` rows.
//!
//! Two routes, chosen by `route`:
//! - `orders`: the CDP's simplified orders
//!   (yandex.com/dev/metrika/en/management/openapi/schema/uploadSimpleOrders:
//!   `POST /cdp/api/v1/counter/{id}/data/simple_orders?merge_mode=SAVE`,
//!   a multipart `file` in CSV; columns per
//!   yandex.com/dev/metrika/doc/api2/practice/crm/simple-orders-data:
//!   `id` and `create_date_time` required, and one of `client_ids`,
//!   `emails`, `phones`, `emails_md5`, `phones_md5`). Matched by phone,
//!   which is what a salon's CRM has.
//! - `conversions`: offline conversions
//!   (…/openapi/offline_conversions/upload_1: `POST
//!   /management/v1/counter/{id}/offline_conversions/upload?comment=…`;
//!   columns `ClientId`, `Yclid` or `UserId`, then `Target`, `DateTime`
//!   in Unix seconds, `Price`, `Currency`). Its uploads are listed with
//!   their comment (…/offline_conversions/findAll_1) and each has a
//!   status, PREPARED through PROCESSED or LINKAGE_FAILURE, with linked
//!   and not-found counts (…/findById_1).

use std::time::Duration;

use crate::template::Template;

/// Where Metrica's API lives; tests point `api_url` at a local server.
pub const METRICA_API: &str = "https://api-metrika.yandex.net";

/// Which upload a metrica action's rows go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The CDP's `simple_orders`: orders matched by phone, email or ClientID.
    Orders,
    /// `offline_conversions/upload`: goals reached, matched by ClientId,
    /// Yclid or UserId.
    Conversions,
}

impl Route {
    /// The route's name as the config writes it.
    pub fn name(self) -> &'static str {
        match self {
            Route::Orders => "orders",
            Route::Conversions => "conversions",
        }
    }

    /// The columns a row may have, in the order the CSV puts them.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Route::Orders => ORDER_COLUMNS,
            Route::Conversions => CONVERSION_COLUMNS,
        }
    }

    /// The column holding the row's time.
    pub fn time_column(self) -> &'static str {
        match self {
            Route::Orders => "create_date_time",
            Route::Conversions => "DateTime",
        }
    }

    /// The columns one of which a row must fill: who the row is about.
    pub fn identifiers(self) -> &'static [&'static str] {
        match self {
            Route::Orders => &["phones", "phones_md5", "emails", "emails_md5", "client_ids"],
            Route::Conversions => &["ClientId", "Yclid", "UserId"],
        }
    }

    /// The columns every row must fill (besides the time, which defaults
    /// to the event's arrival).
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Route::Orders => &["id"],
            Route::Conversions => &["Target"],
        }
    }
}

/// The CDP's simplified order columns.
pub const ORDER_COLUMNS: &[&str] = &[
    "id",
    "create_date_time",
    "client_uniq_id",
    "client_ids",
    "emails",
    "phones",
    "emails_md5",
    "phones_md5",
    "order_status",
    "revenue",
    "cost",
];

/// The offline conversions' columns.
pub const CONVERSION_COLUMNS: &[&str] = &["ClientId", "Yclid", "UserId", "Target", "DateTime", "Price", "Currency"];

/// Yandex Metrica's documented quotas on its management API
/// (yandex.com/dev/metrika/en/intro/quotas): requests a day per login, at
/// once, and a second per IP address. hookrelay stays under each.
pub const DAILY_REQUESTS: u32 = 5000;
pub const PARALLEL_REQUESTS: usize = 3;
pub const REQUESTS_PER_SECOND: u32 = 30;

/// A metrica action's settings.
#[derive(Debug, Clone)]
pub struct Metrica {
    pub counter: u64,
    /// The OAuth token (`Authorization: OAuth …`), sent when a batch goes out.
    pub token: super::super::Secret,
    pub route: Route,
    /// `https://api-metrika.yandex.net`, without a trailing slash.
    pub api: String,
    /// The counter's time zone: rows' times without one are read in it,
    /// and `create_date_time` is written in it.
    pub time_zone: jiff::tz::TimeZone,
    /// Its name, as configured.
    pub time_zone_name: String,
    /// A batch goes out when its oldest row waited this long…
    pub batch_every: Duration,
    /// …or when it has this many rows.
    pub batch_max: usize,
    /// How often an upload's processing state is read until it ends.
    pub poll_every: Duration,
    /// Rows dated longer ago than this are refused (Metrica links
    /// conversions within 21 days by default).
    pub window: Duration,
    /// The row's columns and their templates, in the route's order.
    pub row: Vec<(String, Template)>,
    /// `processing/action`: the rows waiting for a batch are found by it.
    pub key: String,
}

impl Metrica {
    /// Where a batch of rows is uploaded (the offline conversions' comment
    /// is added per batch).
    pub fn upload_url(&self) -> String {
        match self.route {
            Route::Orders => format!(
                "{}/cdp/api/v1/counter/{}/data/simple_orders?merge_mode=SAVE&delimiter_type=COMMA",
                self.api, self.counter
            ),
            Route::Conversions => format!(
                "{}/management/v1/counter/{}/offline_conversions/upload",
                self.api, self.counter
            ),
        }
    }

    /// Where the uploads are listed: to find one whose answer was lost, and
    /// to read their states.
    pub fn uploads_url(&self) -> String {
        match self.route {
            Route::Orders => format!(
                "{}/cdp/api/v1/counter/{}/last_uploadings?limit=100",
                self.api, self.counter
            ),
            Route::Conversions => format!(
                "{}/management/v1/counter/{}/offline_conversions/uploadings",
                self.api, self.counter
            ),
        }
    }

    /// Where one offline conversions upload's state is read.
    pub fn upload_state_url(&self, id: &str) -> String {
        format!(
            "{}/management/v1/counter/{}/offline_conversions/uploading/{id}",
            self.api, self.counter
        )
    }
}
