//! Label matchers in Alertmanager's own syntax (`alertname="PostgresDown"`, `site=~"khartoum|port-sudan"`,
//! `severity!="info"`, `env!~"test.*"`): parsed once at config load, regexes anchored like
//! Alertmanager's, and the routing of an alert's labels to the first `[[hooks.matchers]]`
//! entry whose every matcher holds.

use std::collections::BTreeMap;

use niledr_web::HookSource;

/// One `name op "value"`.
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    /// The anchored regex for `=~` and `!~`.
    regex: Option<regex::Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl LabelMatcher {
    /// Parse `name="value"` (or `!=`, `=~`, `!~`); the value may be unquoted. An error says
    /// what is wrong, for the config loader to place at the string's line and column.
    pub fn parse(text: &str) -> Result<LabelMatcher, String> {
        let t = text.trim();
        let end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        let name = &t[..end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "matcher {text:?} must start with a label name (letters, digits, '_'), e.g. alertname=\"PostgresDown\""
            ));
        }
        let rest = t[end..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (Op::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (Op::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (Op::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (Op::Equal, r)
        } else {
            return Err(format!(
                "matcher {text:?} needs an operator after {name:?}: =, !=, =~ or !~"
            ));
        };
        let value = unquote(rest.trim()).map_err(|e| format!("matcher {text:?}: {e}"))?;
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher {text:?}: bad regex {value:?}: {e}"))?,
            ),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(LabelMatcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// Does it hold for `labels`? A missing label is the empty string (as in Alertmanager).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => v == self.value,
            (Op::NotEqual, _) => v != self.value,
            (Op::Regex, Some(r)) => r.is_match(v),
            (Op::NotRegex, Some(r)) => !r.is_match(v),
            (Op::Regex | Op::NotRegex, None) => false,
        }
    }
}

/// A value in double quotes (with `\"` and `\\` escapes), or bare.
fn unquote(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        if s.contains('"') {
            return Err("a quoted value must start and end with '\"'".into());
        }
        return Ok(s.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                Some('n') => out.push('\n'),
                other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
            },
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err("text after the closing quote".into())
                };
            }
            c => out.push(c),
        }
    }
    Err("the value's closing '\"' is missing".into())
}

/// A `[[hooks.matchers]]` entry: when every matcher holds for an alert from one of
/// `sources`, the alert is evidence on `service` and proposes `runbook`.
#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub sources: Vec<HookSource>,
    pub matchers: Vec<LabelMatcher>,
    pub service: String,
    pub runbook: String,
}

impl Route {
    pub fn matches(&self, source: HookSource, labels: &BTreeMap<String, String>) -> bool {
        self.sources.contains(&source) && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// The first route (in config order) that matches.
pub fn route<'a>(
    routes: &'a [Route],
    source: HookSource,
    labels: &BTreeMap<String, String>,
) -> Option<&'a Route> {
    routes.iter().find(|r| r.matches(source, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator_and_quoting() {
        let cases = [
            (r#"alertname="PostgresDown""#, Op::Equal, "PostgresDown"),
            (r#"site != "dr-cold""#, Op::NotEqual, "dr-cold"),
            (
                r#"site=~"khartoum|port-sudan""#,
                Op::Regex,
                "khartoum|port-sudan",
            ),
            (r#"env!~"test.*""#, Op::NotRegex, "test.*"),
            ("severity=critical", Op::Equal, "critical"),
            (
                r#"summary="say \"hi\" \\ bye""#,
                Op::Equal,
                r#"say "hi" \ bye"#,
            ),
            (r#"team="""#, Op::Equal, ""),
        ];
        for (text, op, value) in cases {
            let m = LabelMatcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((m.op, m.value.as_str()), (op, value), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read_and_says_why() {
        let cases = [
            ("=\"x\"", "must start with a label name"),
            ("1abc=\"x\"", "must start with a label name"),
            ("alertname", "needs an operator"),
            ("alertname ~ \"x\"", "needs an operator"),
            ("alertname=\"x", "closing '\"' is missing"),
            ("alertname=\"x\" y", "text after the closing quote"),
            ("alertname=x\"", "must start and end"),
            ("site=~\"(khartoum\"", "bad regex"),
            ("a=\"\\q\"", "unknown escape"),
        ];
        for (text, want) in cases {
            let e = LabelMatcher::parse(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn matches_like_alertmanager() {
        let l = labels(&[("alertname", "PostgresDown"), ("site", "khartoum")]);
        let yes = [
            r#"alertname="PostgresDown""#,
            r#"site=~"khartoum|port-sudan""#,
            r#"site!="dr-cold""#,
            r#"env!~"test.*""#,
            // A missing label is the empty string.
            r#"env="""#,
            r#"site=~"k.*""#,
        ];
        let no = [
            r#"alertname="RedisDown""#,
            // Regexes are anchored: a substring does not match.
            r#"site=~"khart""#,
            r#"site=~"hartoum""#,
            r#"site!~"k.*""#,
            r#"env=~".+""#,
            r#"site="Khartoum""#,
        ];
        for t in yes {
            assert!(LabelMatcher::parse(t).unwrap().matches(&l), "{t}");
        }
        for t in no {
            assert!(!LabelMatcher::parse(t).unwrap().matches(&l), "{t}");
        }
    }

    #[test]
    fn the_first_matching_route_wins_and_sources_filter() {
        let r = |name: &str, sources: Vec<HookSource>, ms: &[&str]| Route {
            name: name.into(),
            sources,
            matchers: ms.iter().map(|m| LabelMatcher::parse(m).unwrap()).collect(),
            service: format!("{name}-svc"),
            runbook: format!("{name}-rb"),
        };
        let routes = vec![
            r(
                "pd-only",
                vec![HookSource::PagerDuty],
                &[r#"alertname="PostgresDown""#],
            ),
            r(
                "pg",
                HookSource::all().to_vec(),
                &[r#"alertname="PostgresDown""#, r#"site="khartoum""#],
            ),
            r(
                "any-pg",
                HookSource::all().to_vec(),
                &[r#"alertname=~"Postgres.*""#],
            ),
        ];
        let l = labels(&[("alertname", "PostgresDown"), ("site", "khartoum")]);
        let name = |s, l| route(&routes, s, l).map(|r| r.name.as_str());
        assert_eq!(name(HookSource::Alertmanager, &l), Some("pg"));
        assert_eq!(name(HookSource::PagerDuty, &l), Some("pd-only"));
        let other_site = labels(&[("alertname", "PostgresDown"), ("site", "port-sudan")]);
        assert_eq!(name(HookSource::Generic, &other_site), Some("any-pg"));
        assert_eq!(
            name(HookSource::Generic, &labels(&[("alertname", "Disk")])),
            None
        );
    }
}
