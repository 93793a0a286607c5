//! The relay from the outside: webhooks in over HTTP, requests out to a
//! real receiver, history read back through the CLI.

mod cli;
mod delivery;
mod ingest;
mod operator;
mod reload;
mod rules;
