//! Secrets never leave the daemon: the one place that masks passwords in text and JSON before
//! anything is shown (API views and responses, audit details, log lines). Connection strings
//! keep their host, port, database and user; the password becomes `***`.
//!
//! Masked: the password of a URI's userinfo (`postgres://u:pw@h/db`, `redis://:pw@h`, any
//! scheme, percent-encoded or not), and the value of a `key=value` / `key: value` pair whose
//! key names a secret (`password=…`, `PGPASSWORD=…`, `sslpassword='…'`, `?password=…&`,
//! `"token": "…"`): libpq key=value strings, PgBouncer `[databases]` lines, env files, query
//! strings. In JSON, a string under a secret-named key is masked whole.
//! Digests are computed from the real content elsewhere; only what is shown is masked.

pub mod http;
pub mod log;

use std::borrow::Cow;

pub const MASK: &str = "***";

/// Keys whose value belongs to the caller, not to the daemon: a console session's CSRF token
/// is answered to the session's holder (`/api/v1/session`) and must reach them unmasked.
const HOLDERS_OWN: [&str; 1] = ["csrf_token"];

/// Whether a key (any case, any separator) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if HOLDERS_OWN.contains(&k.as_str()) {
        return false;
    }
    const WORDS: [&str; 8] = [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "passphrase",
        "apikey",
        "api_key",
    ];
    WORDS.iter().any(|w| k.contains(w)) || k == "pass" || k.ends_with("_pass")
}

/// `s` with every password masked (borrowed when there was nothing to mask).
pub fn text(s: &str) -> Cow<'_, str> {
    let uris = mask_uri_passwords(s);
    match mask_secret_pairs(&uris) {
        Cow::Borrowed(_) => uris,
        Cow::Owned(o) => Cow::Owned(o),
    }
}

/// Mask every string in `v` (and whole strings under secret-named keys), in place.
pub fn json(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            if let Cow::Owned(o) = text(s) {
                *s = o;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(json),
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match val {
                    Value::String(s) if is_secret_key(k) && !s.is_empty() => {
                        *s = MASK.to_string();
                    }
                    _ => json(val),
                }
            }
        }
        _ => {}
    }
}

/// A wire view with every string redacted (through its JSON form, so no field is forgotten).
pub fn view<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(t: &T) -> T {
    let Ok(mut v) = serde_json::to_value(t) else {
        return t.clone();
    };
    json(&mut v);
    serde_json::from_value(v).unwrap_or_else(|_| t.clone())
}

/// An API error with its message redacted (a drift or step error may quote a file).
pub fn api_error(e: niledr_web::ApiError) -> niledr_web::ApiError {
    use niledr_web::ApiError as E;
    let t = |m: String| text(&m).into_owned();
    match e {
        E::NotFound(m) => E::NotFound(t(m)),
        E::BadRequest(m) => E::BadRequest(t(m)),
        E::Unauthorized(m) => E::Unauthorized(t(m)),
        E::Forbidden(m) => E::Forbidden(t(m)),
        E::Conflict(m) => E::Conflict(t(m)),
        E::TooManyRequests {
            message,
            retry_after_secs,
        } => E::TooManyRequests {
            message: t(message),
            retry_after_secs,
        },
        E::Internal(m) => E::Internal(t(m)),
        E::Unavailable(m) => E::Unavailable(t(m)),
    }
}

/// Characters that end a URI or an unquoted value inside surrounding text (JSON, logs).
fn ends_token(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '\\')
}

fn mask_uri_passwords(s: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut done = 0; // bytes of `s` already copied to `out`
    let mut from = 0;
    while let Some(i) = s[from..].find("://").map(|i| i + from) {
        let rest = &s[i + 3..];
        let token_end = rest.find(ends_token).unwrap_or(rest.len());
        let token = &rest[..token_end];
        // The authority ends before the query; the userinfo before its last '@' (a password
        // may hold an unencoded '/' or '@').
        let limit = token.find(['?', '#']).unwrap_or(token.len());
        if let Some(at) = token[..limit].rfind('@')
            && let Some(colon) = token[..at].find(':')
            && colon + 1 < at
        {
            let start = i + 3 + colon + 1;
            out.push_str(&s[done..start]);
            out.push_str(MASK);
            done = i + 3 + at;
        }
        from = i + 3 + token_end.max(1).min(rest.len());
        if from >= s.len() {
            break;
        }
    }
    if done == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[done..]);
    Cow::Owned(out)
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Where the value starting at byte `v` of `s` ends: past its closing quote when quoted
/// (backslash escapes honoured), else at whitespace, a separator or a quote.
fn value_end(s: &str, v: usize) -> usize {
    let rest = &s[v..];
    let mut chars = rest.char_indices();
    match chars.next() {
        Some((_, q @ ('\'' | '"'))) => {
            let mut escaped = false;
            for (j, c) in chars {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    return v + j + 1;
                }
            }
            s.len()
        }
        _ => {
            v + rest
                .find(|c: char| ends_token(c) || matches!(c, '&' | ';' | ',' | ')' | '}' | ']'))
                .unwrap_or(rest.len())
        }
    }
}

/// The secret pair whose key starts at or after `from`: (value start, value end, quote).
fn next_secret_pair(s: &str, from: usize) -> Option<(usize, usize, Option<char>)> {
    let b = s.as_bytes();
    let mut i = from;
    while i < s.len() {
        if !s.is_char_boundary(i) || !is_key_char(b[i] as char) {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && is_key_char(b[i] as char) {
            i += 1;
        }
        let key = &s[start..i];
        let mut j = i;
        if j < s.len() && matches!(b[j], b'"' | b'\'') {
            j += 1; // a quoted key: "password": ...
        }
        while j < s.len() && b[j] == b' ' {
            j += 1;
        }
        let sep = b.get(j).copied();
        let pair = matches!(sep, Some(b'=')) || (sep == Some(b':') && !s[j..].starts_with("://"));
        if !pair || !is_secret_key(key) {
            continue;
        }
        let mut v = j + 1;
        while v < s.len() && b[v] == b' ' {
            v += 1;
        }
        if s[v..].starts_with("Some(") {
            v += "Some(".len(); // a Debug-printed Option
        }
        let end = value_end(s, v);
        let quote = s[v..].chars().next().filter(|c| matches!(c, '\'' | '"'));
        return Some((v, end, quote));
    }
    None
}

fn mask_secret_pairs(s: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut done = 0;
    let mut from = 0;
    while let Some((v, end, quote)) = next_secret_pair(s, from) {
        from = end.max(v + 1);
        if end <= v {
            continue; // an empty value: nothing to hide
        }
        out.push_str(&s[done..v]);
        match quote {
            Some(q) => {
                out.push(q);
                out.push_str(MASK);
                out.push(q);
            }
            None => out.push_str(MASK),
        }
        done = end;
        if from >= s.len() {
            break;
        }
    }
    if done == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[done..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The session's CSRF token is its holder's: it is answered, every other token is masked.
    #[test]
    fn a_csrf_token_is_the_holders_and_other_tokens_are_secrets() {
        let mut v = serde_json::json!({
            "csrf_token": "c5rf", "token": "t0k", "api_token": "a", "principal": {"name": "amira"}
        });
        json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "csrf_token": "c5rf", "token": MASK, "api_token": MASK, "principal": {"name": "amira"}
            })
        );
    }

    #[test]
    fn passwords_are_masked_and_addresses_kept() {
        let cases: &[(&str, &str)] = &[
            // libpq URIs
            (
                "postgres://app:S3cret@10.0.0.1:5432/nilecare",
                "postgres://app:***@10.0.0.1:5432/nilecare",
            ),
            (
                "DATABASE_URL=postgresql://app:S3cret@db.nilecare.sd:6432/nilecare?sslmode=require\n",
                "DATABASE_URL=postgresql://app:***@db.nilecare.sd:6432/nilecare?sslmode=require\n",
            ),
            // percent-encoded password, and one with unencoded '@' and '/'
            (
                "postgres://app:S%33cr%40t@h:5432/db",
                "postgres://app:***@h:5432/db",
            ),
            ("postgres://app:a/b@c@h/db", "postgres://app:***@h/db"),
            // empty user, redis
            (
                "redis://:S3cret@10.0.0.2:6379/0",
                "redis://:***@10.0.0.2:6379/0",
            ),
            // no password: untouched
            (
                "postgres://app@10.0.0.1:5432/nilecare",
                "postgres://app@10.0.0.1:5432/nilecare",
            ),
            (
                "http://127.0.0.1:8080/api/v1/sites",
                "http://127.0.0.1:8080/api/v1/sites",
            ),
            // password in the query string
            (
                "postgres://h/db?user=app&password=S3cret&sslmode=require",
                "postgres://h/db?user=app&password=***&sslmode=require",
            ),
            // libpq key=value, quoted with spaces and escapes
            (
                "host=10.0.0.1 port=5432 dbname=nilecare user=app password=S3cret",
                "host=10.0.0.1 port=5432 dbname=nilecare user=app password=***",
            ),
            (
                "host=h password = 'S3 cr\\'et' dbname=d",
                "host=h password = '***' dbname=d",
            ),
            (
                "sslpassword=\"S3cret x\" port=1",
                "sslpassword=\"***\" port=1",
            ),
            // PgBouncer [databases] line and env files
            (
                "nilecare = host=127.0.1.1 port=5432 dbname=postgres password=S3cret\n",
                "nilecare = host=127.0.1.1 port=5432 dbname=postgres password=***\n",
            ),
            (
                "PGHOST=h\nPGPASSWORD=S3cret\nAPP_DB_PASS=S3cret\n",
                "PGHOST=h\nPGPASSWORD=***\nAPP_DB_PASS=***\n",
            ),
            // JSON text and YAML-ish
            (
                r#"{"password": "S3cret", "host": "h"}"#,
                r#"{"password": "***", "host": "h"}"#,
            ),
            ("token: S3cret", "token: ***"),
            (r#"password: Some("S3cret")"#, r#"password: Some("***")"#),
            // ordinary prose is left alone
            (
                "the bearer token is not valid (unknown user)",
                "the bearer token is not valid (unknown user)",
            ),
            ("error: connection refused", "error: connection refused"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(text(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn nothing_to_mask_borrows() {
        assert!(matches!(text("host=h port=1"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_masks_strings_everywhere_and_secret_keys_whole() {
        let mut v = serde_json::json!({
            "before": "DATABASE_URL=postgres://app:S3cret@h:1/db\n",
            "nested": [{ "detail": "password=S3cret" }],
            "password": "S3cret",
            "agent_token": "ndr_x_S3cret",
            // a number under a secret-looking key (the cluster's fencing token) stays
            "token": 42,
            "digest": "abcd",
        });
        json(&mut v);
        let s = v.to_string();
        assert!(!s.contains("S3cret"), "{s}");
        assert_eq!(v["before"], "DATABASE_URL=postgres://app:***@h:1/db\n");
        assert_eq!(v["password"], MASK);
        assert_eq!(v["token"], 42);
        assert_eq!(v["digest"], "abcd");
    }

    #[test]
    fn views_round_trip_redacted() {
        let t = niledr_web::types::TimelineView {
            at: "t".into(),
            event: "e".into(),
            detail: "pgbouncer [db]: host=h password=S3cret → host=g".into(),
        };
        assert_eq!(
            view(&t).detail,
            "pgbouncer [db]: host=h password=*** → host=g"
        );
    }
}
