//! The relay from the outside: webhooks in over HTTP, requests out to a
//! real receiver, history read back through the CLI.

mod admin;
mod amocrm;
mod amocrm_oauth;
mod cli;
mod cluster;
mod console;
mod console_tasks;
mod delivery;
mod destinations;
mod first_hour;
mod ingest;
mod metrica;
mod notify;
mod operator;
mod outcomes;
mod receivers;
mod reload;
mod rules;
