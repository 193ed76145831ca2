//! The document covers the router exactly, and every reference in it resolves.

use std::collections::BTreeSet;

use super::{docs, document};
use crate::routes::routes;

fn key(method: &axum::http::Method, path: &str) -> (String, String) {
    (method.as_str().to_lowercase(), path.to_string())
}

#[test]
fn every_route_of_the_router_has_a_doc_entry_and_every_entry_a_route() {
    let routes: BTreeSet<_> = routes().iter().map(|r| key(&r.method, r.path)).collect();
    let documented: BTreeSet<_> = docs().iter().map(|d| key(&d.method, d.path)).collect();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routes without a RouteDoc in web/src/openapi/docs.rs: {undocumented:?}"
    );
    assert!(stale.is_empty(), "RouteDocs of no route: {stale:?}");
    assert_eq!(docs().len(), documented.len(), "a route documented twice");
}

#[test]
fn the_document_lists_every_route_in_the_router() {
    let doc = serde_json::to_value(document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for r in routes() {
        let m = r.method.as_str().to_lowercase();
        let op = &doc["paths"][r.path.replace("{*", "{")][&m];
        assert!(
            op.is_object(),
            "{} {} missing from the document",
            r.method,
            r.path
        );
        assert!(op["responses"].as_object().is_some_and(|x| !x.is_empty()));
        let secured = op.get("security").is_some();
        assert_eq!(
            secured,
            r.access != crate::access::Access::Public,
            "{} {}: security requirement must match its access",
            r.method,
            r.path
        );
    }
}

/// Every `$ref` names a schema in `components`.
#[test]
fn every_reference_resolves() {
    let doc = serde_json::to_value(document()).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20, "{refs:?}");
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(&r);
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    for wire in [
        "SiteView",
        "ExecutionView",
        "DrillRunView",
        "ErrorBody",
        "AuditPageView",
    ] {
        assert!(schemas.contains_key(wire), "{wire} missing");
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}
