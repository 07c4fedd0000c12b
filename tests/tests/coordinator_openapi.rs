//! The OpenAPI document served at `/v1/openapi.json` is structurally valid and matches the
//! routes: every documented operation is routed (no `route_not_found`/`method_not_allowed`),
//! the documented set equals the routes this test expects, and every `$ref` resolves.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::harness::coordinator::{ADMIN_TOKEN, Coordinator, seed_node};
use e2e::harness::etcd::EtcdServer;
use serde_json::Value;

/// Every route of the API, as `METHOD path-template`. Adding a route means adding it here:
/// the test then checks it is documented and served.
const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /metrics",
    "GET /v1/openapi.json",
    "GET /v1/packages",
    "GET /v1/clusters",
    "GET /v1/clusters/{namespace}/{project}/{cluster}",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/nodes",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/primary",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/history",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/events",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/statements",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/switchover",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/failover",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/restore",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/migration",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/migration/cutover",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/upgrade",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/upgrade",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/upgrade/pause",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/upgrade/resume",
    "PUT /v1/clusters/{namespace}/{project}/{cluster}/maintenance",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}/reinit",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}/restart",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}/reload",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/reload",
    "DELETE /v1/clusters/{namespace}/{project}/{cluster}/members/{id}",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}/config",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/backups",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/backups",
    "GET /v1/clusters/{namespace}/{project}/{cluster}/backups/{id}",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/backups/{id}/verify",
    "POST /v1/clusters/{namespace}/{project}/{cluster}/backups/{id}/test-restore",
    "GET /v1/tokens",
    "POST /v1/tokens",
    "DELETE /v1/tokens/{id}",
    "POST /v1/agents/register",
    "GET /v1/audit",
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    doc.pointer(r.strip_prefix('#')?)
}

/// Every `$ref` anywhere under `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_is_valid_and_matches_the_routes() {
    let etcd = EtcdServer::start().expect("etcd");
    seed_node(&etcd, "a/p/c1", "n1", true, 1);
    let coord = Coordinator::start(&etcd.endpoint(), &["--rate-limit", "0"]).expect("start");
    let api = coord.api(None);
    let (s, doc) = api.get("/v1/openapi.json");
    assert_eq!(s, 200);
    // The binary's `coordinator openapi` prints the same document.
    let out = std::process::Command::new(e2e::harness::util::workspace_bin("coordinator"))
        .arg("openapi")
        .output()
        .expect("coordinator openapi");
    let printed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        printed, doc,
        "`coordinator openapi` and /v1/openapi.json differ"
    );

    // Structure (OpenAPI 3.x essentials).
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = BTreeSet::new();
    let mut op_ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().expect("path item") {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: unknown key {method}"
            );
            documented.insert(format!("{} {path}", method.to_uppercase()));
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(op_ids.insert(id.to_owned()), "duplicate operationId {id}");
            let responses = op["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path}: no responses"));
            assert!(!responses.is_empty(), "{method} {path}");
            for (code, r) in responses {
                assert!(
                    code.len() == 3 && code.parse::<u16>().is_ok(),
                    "{method} {path}: response {code}"
                );
                assert!(
                    r["description"].is_string(),
                    "{method} {path} {code}: no description"
                );
            }
            let params: Vec<&Value> = op["parameters"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let declared: BTreeSet<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(
                        p["required"], true,
                        "{method} {path}: path parameters are required"
                    );
                    p["name"].as_str().expect("name")
                })
                .collect();
            assert_eq!(declared, templated, "{method} {path}: path parameters");
            for p in &params {
                assert!(
                    ["path", "query", "header", "cookie"].contains(&p["in"].as_str().unwrap_or("")),
                    "{p}"
                );
            }
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        assert!(resolve(&doc, r).is_some(), "unresolved $ref {r}");
    }

    // The documented operations are exactly the routes.
    let expected: BTreeSet<String> = ROUTES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        documented, expected,
        "documented operations differ from the routes"
    );

    // And every documented operation is served: substitute the parameters and call it
    // (admin token): the router must know it (no route_not_found / method_not_allowed).
    let admin = coord.api(Some(ADMIN_TOKEN));
    for op in &documented {
        let (method, template) = op.split_once(' ').expect("method path");
        if template.ends_with("/events") {
            continue; // a stream: checked below without reading it to the end
        }
        let path = template
            .replace("{namespace}", "a")
            .replace("{project}", "p")
            .replace("{cluster}", "c1")
            .replace("{id}", "0123456789abcdef");
        let (s, v) = admin.raw(method, &path, Some(b"{}".to_vec()));
        let code = v["code"].as_str().unwrap_or("");
        assert!(
            !matches!(code, "route_not_found" | "method_not_allowed") && s != 405,
            "{op} is documented but not routed: {s} {v}"
        );
    }
    let (s, _) = e2e::harness::coordinator::sse(
        coord.url(),
        ADMIN_TOKEN,
        "/v1/clusters/a/p/c1/events",
        Duration::from_secs(2),
    );
    assert_eq!(s, 200);
    // And something undocumented is not routed.
    assert_eq!(
        admin.get("/v1/clusters/a/p/c1/secrets").1["code"],
        "route_not_found"
    );
}
