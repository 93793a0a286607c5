//! `hookrelay token`: a new random token, 192 bits from the OS, URL-safe.

use base64::Engine;

use super::Failure;

/// Random bytes in a token: 24 bytes are 32 base64url characters.
const TOKEN_BYTES: usize = 24;

/// A fresh token from the operating system's randomness.
pub fn new_token() -> Result<String, Failure> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Failure::Runtime(format!("no randomness from the OS: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn run() -> Result<(), Failure> {
    println!("{}", new_token()?);
    Ok(())
}
