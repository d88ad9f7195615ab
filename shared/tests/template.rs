//! `template.yaml`, the code and the repository cannot drift apart: every function under
//! `functions/` has a SAM function with its binary, path and method, every API route belongs to
//! one of them, every worst-case time fits its function's timeout, and no file refers to pages
//! outside the repository.

use shared::Endpoint;
use std::collections::BTreeMap;
use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[derive(Debug, Default, PartialEq)]
struct Route {
    binary: Option<String>,
    routes: Vec<(String, String)>,
    actions: Vec<String>,
    /// The function's own `Timeout`, when it overrides the global one.
    timeout: Option<u64>,
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
        if let Some(timeout) = line.strip_prefix("Timeout: ") {
            route.timeout = Some(timeout.trim().parse().expect("a Timeout in seconds"));
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

/// The `Globals.Function` block of the template.
fn globals(template: &str) -> String {
    template
        .split("\nGlobals:\n")
        .nth(1)
        .expect("a Globals section")
        .split("\nResources:\n")
        .next()
        .unwrap()
        .to_owned()
}

/// The config the functions run with: the literal environment values of the template's globals
/// (references to parameters are left to their defaults, none of which is a time budget).
fn deployed_config() -> shared::Config {
    let globals = globals(&template());
    let variables = globals
        .split("      Variables:\n")
        .nth(1)
        .expect("Globals.Function.Environment.Variables");
    let mut vars = std::collections::HashMap::new();
    for line in variables.lines().take_while(|l| l.starts_with("        ")) {
        if let Some((name, value)) = line.trim().split_once(": ")
            && !value.starts_with('!')
            && !value.starts_with('-')
        {
            vars.insert(name.to_owned(), value.trim_matches('"').to_owned());
        }
    }
    for budget in [
        "REDIS_CONNECT_TIMEOUT_MS",
        "REDIS_COMMAND_TIMEOUT_MS",
        "DYNAMODB_TIMEOUT_MS",
    ] {
        assert!(
            vars.contains_key(budget) || !variables.contains(budget),
            "{budget} must be a literal in the template so that this test reads it"
        );
    }
    shared::Config::from_map(&vars).expect("the template's environment is a valid config")
}

/// A revocation that DynamoDB accepted must reach Redis or bump the epoch before Lambda stops
/// the function: every endpoint's worst case stays a margin below its function's `Timeout`.
#[test]
fn every_worst_case_fits_its_function_timeout() {
    let template = template();
    let global: u64 = globals(&template)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Timeout: "))
        .expect("Globals.Function.Timeout")
        .trim()
        .parse()
        .unwrap();
    let functions = functions(&template);
    let config = deployed_config();
    for case in shared::budget::worst_cases(&config) {
        let binary = case.endpoint.function();
        let function = functions
            .values()
            .find(|f| f.binary.as_deref() == Some(binary))
            .unwrap();
        let timeout = std::time::Duration::from_secs(function.timeout.unwrap_or(global));
        assert!(
            case.time + shared::budget::TIMEOUT_MARGIN <= timeout,
            "{binary}: worst case {:?} ({}) leaves less than {:?} of its Timeout {timeout:?}",
            case.time,
            case.steps,
            shared::budget::TIMEOUT_MARGIN
        );
    }
}

/// The repository explains itself: no file refers to pages outside it (a design file kept
/// beside the repository, a folder above it) or to tracker issue numbers a reader cannot look up.
#[test]
fn nothing_refers_outside_the_repository() {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(ROOT)
        .output()
        .expect("git ls-files");
    assert!(listed.status.success(), "git ls-files failed");
    // Spelled in pieces, so that this file does not match itself.
    let design = ["DESIGN", ".md"].concat();
    let above = ["..", "/shared"].concat();
    let mut found = Vec::new();
    for path in String::from_utf8(listed.stdout).unwrap().split('\0') {
        if path.is_empty() || path.ends_with(".lock") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(Path::new(ROOT).join(path)) else {
            continue; // binary files
        };
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_ascii_lowercase();
            let issue_number = lower.match_indices("issue ").any(|(i, _)| {
                lower[i + 6..]
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_digit())
            });
            if line.contains(&design) || line.contains(&above) || issue_number {
                found.push(format!("{path}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "refers outside the repository:\n{}",
        found.join("\n")
    );
}
