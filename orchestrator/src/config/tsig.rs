//! The TSIG key file niledr signs DNS updates with, in the BIND/knsupdate format
//! (`key "name" { algorithm hmac-sha256; secret "BASE64"; };`).

use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: String,
    /// Base64 as written in the file.
    pub secret: String,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "TsigKey({} {})", self.name, self.algorithm)
    }
}

const ALGORITHMS: [&str; 3] = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];

impl TsigKey {
    pub fn load(path: &Path) -> Result<TsigKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read TSIG key file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("TSIG key file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<TsigKey, String> {
        let after_key = text
            .split_once("key")
            .map(|(_, r)| r)
            .ok_or("expected `key \"NAME\" { algorithm ...; secret \"...\"; };`")?;
        let name = quoted(after_key).ok_or("key name must be quoted: key \"NAME\" { ... }")?;
        let body = after_key
            .split_once('{')
            .map(|(_, r)| r)
            .ok_or("missing `{` after the key name")?;
        let mut algorithm = None;
        let mut secret = None;
        for stmt in body.split(';') {
            let stmt = stmt.trim().trim_start_matches('}').trim();
            if let Some(a) = stmt.strip_prefix("algorithm") {
                algorithm = Some(a.trim().trim_matches('"').to_ascii_lowercase());
            } else if let Some(s) = stmt.strip_prefix("secret") {
                secret = quoted(s);
            }
        }
        let algorithm = algorithm.ok_or("missing `algorithm hmac-sha256;`")?;
        if !ALGORITHMS.contains(&algorithm.as_str()) {
            return Err(format!(
                "algorithm {algorithm} is not supported; use one of {}",
                ALGORITHMS.join(", ")
            ));
        }
        let secret = secret.ok_or("missing `secret \"BASE64\";`")?;
        if secret.is_empty()
            || !secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        {
            return Err("secret must be base64".into());
        }
        Ok(TsigKey {
            name: name.to_string(),
            algorithm,
            secret,
        })
    }
}

fn quoted(s: &str) -> Option<String> {
    let start = s.find('"')? + 1;
    let len = s[start..].find('"')?;
    Some(s[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_knot_style_key() {
        let k = TsigKey::parse(
            "key \"niledr-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0\";\n};\n",
        )
        .unwrap();
        assert_eq!(k.name, "niledr-key");
        assert_eq!(k.algorithm, "hmac-sha256");
        assert_eq!(k.secret, "c2VjcmV0c2VjcmV0");
        assert!(!format!("{k:?}").contains("c2Vj"));
    }

    #[test]
    fn refuses_md5_and_garbage() {
        let e = TsigKey::parse("key \"k\" { algorithm hmac-md5; secret \"abc=\"; };").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert!(TsigKey::parse("nothing here").is_err());
    }
}
