//! `template.yaml` and the code cannot drift apart: every function under `functions/` has a SAM
//! function with its binary, path and method, and every API route belongs to one of them.

use shared::Endpoint;
use std::collections::BTreeMap;
use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[derive(Debug, Default, PartialEq)]
struct Route {
    binary: Option<String>,
    routes: Vec<(String, String)>,
    actions: Vec<String>,
}

/// The `AWS::Serverless::Function` resources of the template, by logical id. A small reader for
/// this template's own layout (two-space resource keys, flow-style event properties), so that the
/// test needs no YAML library that understands CloudFormation's tags.
fn functions(template: &str) -> BTreeMap<String, Route> {
    let resources = template
        .split("\nResources:\n")
        .nth(1)
        .expect("a Resources section")
        .split("\nOutputs:\n")
        .next()
        .unwrap();
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in resources.lines().chain(std::iter::once("  End:")) {
        let is_resource_key = line.starts_with("  ")
            && !line.starts_with("   ")
            && line.trim_end().ends_with(':')
            && !line.trim_start().starts_with('#');
        if is_resource_key {
            if let Some((id, body)) = current.take()
                && body.contains("Type: AWS::Serverless::Function")
            {
                out.insert(id, parse_function(&body));
            }
            current = Some((line.trim().trim_end_matches(':').to_owned(), String::new()));
        } else if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn parse_function(body: &str) -> Route {
    let mut route = Route::default();
    for line in body.lines().map(str::trim) {
        if let Some(binary) = line.strip_prefix("Binary: ") {
            route.binary = Some(binary.trim().to_owned());
        }
        if line.starts_with("Properties: {") && line.contains("Path:") {
            let field = |name: &str| {
                let start = line.find(&format!("{name}: ")).unwrap() + name.len() + 2;
                let rest = &line[start..];
                match rest.strip_prefix('"') {
                    Some(quoted) => quoted.split('"').next().unwrap().to_owned(),
                    None => rest.split([',', '}']).next().unwrap().trim().to_owned(),
                }
            };
            route.routes.push((field("Method"), field("Path")));
        }
        if let Some(actions) = line.strip_prefix("Action: [") {
            route.actions.extend(
                actions
                    .trim_end_matches(']')
                    .split(',')
                    .map(|a| a.trim().to_owned()),
            );
        }
    }
    route
}

fn template() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("template.yaml")).expect("template.yaml")
}

fn function_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_function_has_its_route_and_every_route_its_function() {
    let functions = functions(&template());
    let dirs = function_dirs();
    assert_eq!(
        dirs.len(),
        Endpoint::ALL.len(),
        "one folder per endpoint: {dirs:?}"
    );
    assert_eq!(
        functions.len(),
        dirs.len(),
        "one SAM function per folder: {functions:#?}"
    );

    for dir in &dirs {
        let endpoint = Endpoint::from_function(dir)
            .unwrap_or_else(|| panic!("functions/{dir} is not an endpoint the code knows"));
        let (id, function) = functions
            .iter()
            .find(|(_, f)| f.binary.as_deref() == Some(dir.as_str()))
            .unwrap_or_else(|| panic!("no SAM function builds the binary {dir}"));
        assert_eq!(
            function.routes,
            vec![(endpoint.method().to_string(), endpoint.path().to_owned())],
            "{id} must serve exactly {} {}",
            endpoint.method(),
            endpoint.path()
        );
        let main =
            std::fs::read_to_string(Path::new(ROOT).join(format!("functions/{dir}/src/main.rs")))
                .unwrap();
        assert!(
            main.contains(&format!("Endpoint::{endpoint:?}")),
            "functions/{dir}/src/main.rs must run Endpoint::{endpoint:?}"
        );
    }
    let routes: Vec<_> = functions.values().flat_map(|f| f.routes.clone()).collect();
    let mut unique = routes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        routes.len(),
        "a route served twice: {routes:?}"
    );
}

#[test]
fn each_function_may_do_only_what_its_endpoint_needs() {
    let functions = functions(&template());
    let actions_of = |binary: &str| -> Vec<String> {
        let mut actions = functions
            .values()
            .find(|f| f.binary.as_deref() == Some(binary))
            .unwrap()
            .actions
            .clone();
        actions.sort();
        actions
    };
    // Reading a session never grants deleting one, and the reverse.
    assert_eq!(actions_of("session-validate"), ["dynamodb:GetItem"]);
    assert_eq!(actions_of("cache-get"), ["dynamodb:GetItem"]);
    assert_eq!(
        actions_of("session-refresh"),
        ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    );
    for reader in [
        "session-validate",
        "session-refresh",
        "cache-get",
        "cache-put",
        "session-stats",
    ] {
        let actions = actions_of(reader);
        assert!(
            !actions
                .iter()
                .any(|a| a.contains("Delete") || a.contains("BatchWrite")),
            "{reader} may not delete sessions: {actions:?}"
        );
    }
    assert!(actions_of("session-logout").contains(&"dynamodb:DeleteItem".to_owned()));
    assert!(!actions_of("session-create").contains(&"dynamodb:DeleteItem".to_owned()));
    for (binary, function) in &functions {
        assert!(
            function
                .actions
                .iter()
                .all(|a| a.starts_with("dynamodb:") && !a.contains('*')),
            "{binary}: no wildcard or foreign permission: {:?}",
            function.actions
        );
        assert!(
            !function
                .actions
                .iter()
                .any(|a| a == "dynamodb:DeleteTable" || a == "dynamodb:UpdateTable"),
            "{binary}"
        );
    }
}
