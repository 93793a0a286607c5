//! Config parsing: any text gives a config or a one-line error, never a panic.
#![no_main]

use std::path::Path;

use hookrelay::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(err) = Config::parse(text, Path::new("/etc/hookrelay/config.toml")) {
        let message = err.to_string();
        assert!(!message.contains('\n'), "a multi-line error: {message:?}");
        assert!(!message.is_empty());
    }
});
