//! The OpenAPI 3.1 description of the API (`GET /api/v1/openapi.json`), generated from the
//! code: the route table (`routes()`: paths, methods, who may call them) and one `RouteDoc`
//! per route (`openapi/docs.rs`: summary, parameters, bodies as the wire types' `ToSchema`).
//! A route without a doc entry, or a doc entry without a route, fails the tests.

mod docs;

use std::collections::BTreeMap;

use axum::http::Method;
use utoipa::ToSchema;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
    ResponseBuilder,
};

use crate::access::Access;
use crate::routes::routes;
use crate::types::ErrorBody;

pub use docs::docs;

/// A body's schema and the named schemas it refers to.
pub struct Shape {
    schema: RefOr<Schema>,
    components: Vec<(String, RefOr<Schema>)>,
}

/// A JSON body of type `T`.
pub fn one<T: ToSchema>() -> Shape {
    let mut components = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut components);
    Shape {
        schema: Ref::from_schema_name(T::name()).into(),
        components,
    }
}

/// A JSON array of `T`.
pub fn many<T: ToSchema>() -> Shape {
    let inner = one::<T>();
    Shape {
        schema: ArrayBuilder::new().items(inner.schema).build().into(),
        components: inner.components,
    }
}

/// A small JSON object (`{"status": "ok"}`).
pub fn status_object() -> Shape {
    Shape {
        schema: ObjectBuilder::new()
            .property("status", ObjectBuilder::new().schema_type(Type::String))
            .required("status")
            .build()
            .into(),
        components: Vec::new(),
    }
}

/// What a successful answer carries.
pub enum Answer {
    Json(fn() -> Shape),
    /// Text of a content type (`text/plain`, `text/markdown`, `text/html`…).
    Text(&'static str),
    /// `text/event-stream`.
    Events,
    /// No body (204).
    Empty,
}

/// A query parameter: name, integer or string, what it means.
pub type Query = (&'static str, QueryType, &'static str);

#[derive(Clone, Copy)]
pub enum QueryType {
    /// A whole number from 0.
    Integer,
    /// `?limit=`: a whole number from 1 to this.
    Limit(u32),
    String,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

/// The documentation of one route of `routes()`.
pub struct RouteDoc {
    pub method: Method,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub query: &'static [Query],
    /// A JSON request body, and whether it may be left out.
    pub body: Option<(fn() -> Shape, bool)>,
    pub ok: u16,
    pub answer: Answer,
    /// Statuses the handler itself answers besides the authentication ones.
    pub errors: &'static [u16],
    /// Statuses answered with the success body rather than an error (load-balancer 503s).
    pub same_body: &'static [u16],
}

/// The whole document.
pub fn document() -> OpenApi {
    let docs: BTreeMap<(String, &str), RouteDoc> = docs()
        .into_iter()
        .map(|d| ((d.method.to_string(), d.path), d))
        .collect();
    let mut paths = Paths::new();
    let mut components = ComponentsBuilder::new();
    let mut named: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    let error = one::<ErrorBody>();
    named.extend(error.components);
    for spec in routes() {
        let Some(doc) = docs.get(&(spec.method.to_string(), spec.path)) else {
            continue; // the tests name every route without a doc entry
        };
        let (operation, used) = operation(doc, spec.access);
        named.extend(used);
        // axum's catch-all `{*path}` is an ordinary `{path}` parameter in OpenAPI.
        let path = spec.path.replace("{*", "{");
        paths.add_path_operation(path, vec![http_method(&spec.method)], operation);
    }
    for (name, schema) in named {
        components = components.schema(name, schema);
    }
    components = components.security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A person's token: `Authorization: Bearer ndr_<user>_<secret>`",
                ))
                .build(),
        ),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("niledr")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The disaster-recovery and failover orchestrator of NileCare: health, runbooks \
                     with two-person approval, executions, drills, audit.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

fn http_method(m: &Method) -> HttpMethod {
    match *m {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

/// One operation and the named schemas it uses.
fn operation(
    doc: &RouteDoc,
    access: Access,
) -> (
    utoipa::openapi::path::Operation,
    Vec<(String, RefOr<Schema>)>,
) {
    let mut used = Vec::new();
    let mut op = OperationBuilder::new()
        .tag(doc.tag)
        .summary(Some(doc.summary))
        .operation_id(Some(operation_id(&doc.method, doc.path)));
    for name in path_params(doc.path) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    for (name, ty, what) in doc.query {
        let schema = match ty {
            QueryType::Integer => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
            QueryType::Limit(max) => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(*max)),
            QueryType::String => ObjectBuilder::new().schema_type(Type::String),
            QueryType::OneOf(words) => ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(words.iter().copied())),
        };
        op = op.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(*what))
                .schema(Some(schema)),
        );
    }
    if let Some((body, optional)) = &doc.body {
        let shape = body();
        used.extend(shape.components);
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(if *optional {
                    Required::False
                } else {
                    Required::True
                }))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(shape.schema)).build(),
                )
                .build(),
        ));
    }
    let ok = ResponseBuilder::new().description(doc.summary);
    let ok = match &doc.answer {
        Answer::Json(f) => {
            let shape = f();
            used.extend(shape.components);
            ok.content(
                "application/json",
                ContentBuilder::new().schema(Some(shape.schema)).build(),
            )
        }
        Answer::Text(ct) => ok.content(
            *ct,
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ),
        Answer::Events => ok.content(
            "text/event-stream",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ),
        Answer::Empty => ok,
    };
    let ok = ok.build();
    for status in doc.same_body {
        op = op.response(status.to_string(), ok.clone());
    }
    op = op.response(doc.ok.to_string(), ok);
    for status in error_statuses(doc, access) {
        op = op.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(error_text(status))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        );
    }
    if access != Access::Public {
        op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    }
    (op.build(), used)
}

/// The handler's own error statuses plus what authentication may answer.
fn error_statuses(doc: &RouteDoc, access: Access) -> Vec<u16> {
    let mut s: Vec<u16> = doc.errors.to_vec();
    match access {
        Access::Public => {}
        Access::Metrics | Access::Read => s.extend([401, 429]),
        Access::Write => s.extend([401, 403, 429]),
    }
    if doc.body.is_some() || !doc.query.is_empty() {
        s.push(400);
    }
    s.sort_unstable();
    s.dedup();
    s
}

fn error_text(status: u16) -> &'static str {
    match status {
        400 => "bad request: the message says what to fix",
        401 => "no principal, or a token that does not verify",
        403 => "the principal's role may not do this",
        404 => "no such thing",
        409 => "conflicts with the current state",
        429 => "too many failed attempts from this client (Retry-After)",
        503 => "not ready",
        _ => "error",
    }
}

/// `{id}` and `{*path}` segments.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|s| s.trim_start_matches('*'))
        .collect()
}

fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_lowercase();
    for seg in path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "api" && *s != "v1")
    {
        id.push('_');
        id.extend(
            seg.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .map(|c| if c == '-' { '_' } else { c }),
        );
    }
    id
}

#[cfg(test)]
mod tests;
