//! `[console]`: the session lifetime and the viewers.

use std::collections::HashSet;

use super::*;

impl RawConsole {
    /// `webhook_tokens`: every processing's tokens, none of which a viewer may reuse.
    pub(super) fn resolve(self, server: &Server, webhook_tokens: &HashSet<String>) -> Result<Console, String> {
        let session_lifetime = self.session_lifetime.map_or(DEFAULT_SESSION_LIFETIME, |d| d.0);
        if session_lifetime < Duration::from_secs(60) {
            return Err("console.session_lifetime: must be at least 1m".into());
        }
        let mut names = HashSet::new();
        let mut tokens: HashSet<String> = server.admin_token.iter().map(|t| t.expose().to_string()).collect();
        let mut viewers = Vec::new();
        for raw in self.viewer {
            let name = raw.name;
            let key = format!("console.viewer `{name}`");
            if !valid_name(&name) {
                return Err(format!("console.viewer: name `{name}`: use only a-z, 0-9 and `-`"));
            }
            if !names.insert(name.clone()) {
                return Err(format!("{key}: the name is used twice"));
            }
            check_token(&format!("{key}: token"), &raw.token)?;
            if webhook_tokens.contains(raw.token.expose()) || !tokens.insert(raw.token.expose().to_string()) {
                return Err(format!(
                    "{key}: token: already used by the admin, another viewer or a processing; make one with `hookrelay token`"
                ));
            }
            if raw.processings.is_empty() || raw.processings.iter().any(|p| p.trim().is_empty()) {
                return Err(format!(
                    "{key}: processings: name at least one processing or pattern (`salon-*`)"
                ));
            }
            viewers.push(Viewer {
                name,
                token: raw.token,
                processings: raw.processings,
                show_address: raw.show_address,
            });
        }
        Ok(Console {
            session_lifetime,
            viewers,
        })
    }
}
