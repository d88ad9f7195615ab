//! `template.yaml`, the code and the repository cannot drift apart, and the template is one that
//! CloudFormation and API Gateway accept (cfn-lint and `sam validate` miss some of what they
//! refuse). The deploy rehearsal (`tools/deploy_rehearsal.py`, run from here) puts the template
//! through the SAM transform offline and holds the result, in every combination of the
//! parameters its conditions read, to rules: rule functions only in `Rules`, CORS origins API
//! Gateway takes, each function's environment read by `shared/src/config.rs` (and parsed here by
//! it), each function only its endpoint's DynamoDB actions, log retention, alarms, references
//! and conditions that resolve, no circular dependency; and each rule is shown to fail on a
//! broken copy. Read statically here: every function under `functions/` has a SAM function with
//! its binary, path and method; the deployed routes are the local API's, preflights included,
//! and the functions alone answer CORS; the session table is created or adopted and every use
//! follows; egress and the cache's growth are bounded; every worst-case time fits its
//! function's timeout; and no file refers to pages outside the repository.

use serde_json::{Map, Value, json};
use shared::config::ClerkKey;
use shared::{Config, Endpoint, StoreKind};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A reader for the part of YAML that `template.yaml` is written in, with CloudFormation's short
/// tags in their long form, as CloudFormation reads them: `!Ref X` is `{"Ref": "X"}`, `!GetAtt
/// A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is `{"Fn::Sub": s}`. Scalars stay strings.
/// Anything outside that part panics with its line, so that a template this reader would
/// misread fails the tests rather than passing them. (This crate has no YAML dependency, and
/// the common ones do not know CloudFormation's tags.)
mod yaml {
    use serde_json::{Map, Value};

    struct Line {
        number: usize,
        indent: usize,
        /// Without indentation, trailing comment or trailing blanks; empty for a blank line.
        text: String,
        raw: String,
    }

    pub fn parse(source: &str) -> Value {
        let lines = source
            .lines()
            .enumerate()
            .map(|(i, raw)| {
                let body = raw.trim_start_matches(' ');
                assert!(
                    !body.starts_with('\t'),
                    "template.yaml line {}: a tab in the indentation",
                    i + 1
                );
                Line {
                    number: i + 1,
                    indent: raw.len() - body.len(),
                    text: strip_comment(body).trim_end().to_owned(),
                    raw: raw.to_owned(),
                }
            })
            .collect();
        let mut reader = Reader { lines, pos: 0 };
        let value = match reader.peek() {
            Some(at) if reader.lines[at].indent == 0 => reader.block(0),
            Some(at) => reader.fail(at, "the document must start at column 0"),
            None => Value::Null,
        };
        if let Some(at) = reader.peek() {
            reader.fail(at, "not part of the document");
        }
        value
    }

    fn strip_comment(text: &str) -> &str {
        let mut quote = None;
        let mut prev = ' ';
        for (i, c) in text.char_indices() {
            match quote {
                Some(q) if c == q && prev != '\\' => quote = None,
                Some(_) => {}
                None if c == '#' && prev.is_whitespace() => return &text[..i],
                None if (c == '"' || c == '\'')
                    && (prev.is_whitespace() || "[{,:".contains(prev)) =>
                {
                    quote = Some(c)
                }
                None => {}
            }
            prev = c;
        }
        text
    }

    fn is_item(text: &str) -> bool {
        text == "-" || text.starts_with("- ")
    }

    /// `key: rest` or `key:`, the key plain or double-quoted.
    fn split_key(text: &str) -> Option<(String, String)> {
        if let Some(quoted) = text.strip_prefix('"') {
            let end = quoted.find('"')?;
            let after = quoted[end + 1..].strip_prefix(':')?;
            return (after.is_empty() || after.starts_with(' '))
                .then(|| (quoted[..end].to_owned(), after.trim().to_owned()));
        }
        if text.starts_with(['!', '[', '{', '\'', '-', '|', '>', '&', '*', '#']) {
            return None;
        }
        let mut from = 0;
        loop {
            let colon = from + text[from..].find(':')?;
            let after = &text[colon + 1..];
            if after.is_empty() || after.starts_with(' ') {
                return Some((text[..colon].to_owned(), after.trim().to_owned()));
            }
            from = colon + 1;
        }
    }

    /// Whether a flow value's brackets are all closed; a value that opens none is.
    fn balanced(text: &str) -> bool {
        let mut rest = text.trim_start();
        while let Some(tagged) = rest.strip_prefix('!') {
            rest = tagged.split_once(' ').map_or("", |(_, r)| r).trim_start();
        }
        if !rest.starts_with(['[', '{']) {
            return true;
        }
        let (mut depth, mut quote) = (0i32, None);
        for c in rest.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '"' | '\'' => quote = Some(c),
                    '[' | '{' => depth += 1,
                    ']' | '}' => depth -= 1,
                    _ => {}
                },
            }
        }
        depth <= 0
    }

    /// A short tag in its long form.
    fn tagged(name: &str, arg: Value) -> Value {
        let (key, arg) = match name {
            "Ref" | "Condition" => (name.to_owned(), arg),
            "GetAtt" => match arg {
                Value::String(s) => {
                    let (resource, attribute) = s
                        .split_once('.')
                        .unwrap_or_else(|| panic!("!GetAtt {s}: no attribute"));
                    (
                        "Fn::GetAtt".to_owned(),
                        Value::from(vec![resource, attribute]),
                    )
                }
                other => ("Fn::GetAtt".to_owned(), other),
            },
            _ => (format!("Fn::{name}"), arg),
        };
        Value::Object(Map::from_iter([(key, arg)]))
    }

    struct Reader {
        lines: Vec<Line>,
        pos: usize,
    }

    impl Reader {
        /// The next line with content, blank lines skipped.
        fn peek(&mut self) -> Option<usize> {
            while self.pos < self.lines.len() && self.lines[self.pos].text.is_empty() {
                self.pos += 1;
            }
            (self.pos < self.lines.len()).then_some(self.pos)
        }

        fn fail(&self, at: usize, what: &str) -> ! {
            let line = &self.lines[at];
            panic!("template.yaml line {}: {what}: {:?}", line.number, line.raw)
        }

        /// The sequence or mapping whose lines start at column `indent`.
        fn block(&mut self, indent: usize) -> Value {
            let at = self.peek().expect("a block");
            if is_item(&self.lines[at].text) {
                self.sequence(indent)
            } else {
                self.mapping(indent)
            }
        }

        fn sequence(&mut self, indent: usize) -> Value {
            let mut items = Vec::new();
            while let Some(at) = self.peek() {
                let line = &self.lines[at];
                if line.indent < indent || (line.indent == indent && !is_item(&line.text)) {
                    break;
                }
                if line.indent > indent {
                    self.fail(at, "unexpected indentation");
                }
                let rest = line.text[1..].trim_start().to_owned();
                let column = indent + line.text.len() - rest.len();
                if split_key(&rest).is_some() {
                    // `- key: value` opens a mapping at the key's column.
                    self.lines[at].indent = column;
                    self.lines[at].text = rest;
                    items.push(self.mapping(column));
                } else {
                    self.pos += 1;
                    items.push(self.value(&rest, indent, at));
                }
            }
            Value::Array(items)
        }

        fn mapping(&mut self, indent: usize) -> Value {
            let mut map = Map::new();
            while let Some(at) = self.peek() {
                let line = &self.lines[at];
                if line.indent < indent || (line.indent == indent && is_item(&line.text)) {
                    break;
                }
                if line.indent > indent {
                    self.fail(at, "unexpected indentation");
                }
                let Some((key, rest)) = split_key(&line.text) else {
                    self.fail(at, "expected `key: value`")
                };
                self.pos += 1;
                let value = self.value(&rest, indent, at);
                if map.insert(key.clone(), value).is_some() {
                    self.fail(at, &format!("duplicate key {key}"));
                }
            }
            Value::Object(map)
        }

        /// What follows `key:` or `- ` on line `at`, in a block at column `indent`.
        fn value(&mut self, rest: &str, indent: usize, at: usize) -> Value {
            if rest.is_empty() {
                return self.nested(indent);
            }
            if rest.starts_with(['|', '>']) {
                return self.block_scalar(rest, indent, at);
            }
            if let Some(name) = rest.strip_prefix('!')
                && !name.contains(char::is_whitespace)
            {
                // A tag alone: its argument is the block below.
                return tagged(name, self.nested(indent));
            }
            // A flow value, continued on the next lines while its brackets are open.
            let mut text = rest.to_owned();
            while !balanced(&text) {
                match self.peek() {
                    Some(next) if self.lines[next].indent > indent => {
                        text.push(' ');
                        text.push_str(&self.lines[next].text);
                        self.pos += 1;
                    }
                    _ => self.fail(at, "a bracket left open"),
                }
            }
            let mut flow = Flow {
                chars: text.chars().collect(),
                at: 0,
                line: self.lines[at].number,
            };
            let value = flow.value(false);
            flow.skip_spaces();
            if flow.at < flow.chars.len() {
                flow.fail("unexpected text after the value");
            }
            value
        }

        /// The block below a `key:` (or a tag alone): deeper, or a sequence at the same column.
        fn nested(&mut self, indent: usize) -> Value {
            match self.peek() {
                Some(next) if self.lines[next].indent > indent => {
                    let column = self.lines[next].indent;
                    self.block(column)
                }
                Some(next)
                    if self.lines[next].indent == indent && is_item(&self.lines[next].text) =>
                {
                    self.sequence(indent)
                }
                _ => Value::Null,
            }
        }

        fn block_scalar(&mut self, header: &str, indent: usize, at: usize) -> Value {
            let folded = header.starts_with('>');
            let chomp = &header[1..];
            if !matches!(chomp, "" | "-" | "+") {
                self.fail(at, "a block scalar header other than | |- |+ > >- >+");
            }
            let mut body: Vec<String> = Vec::new();
            let mut content = None;
            while let Some(line) = self.lines.get(self.pos) {
                let blank = line.raw.trim().is_empty();
                if !blank && line.indent <= indent {
                    break;
                }
                if blank {
                    body.push(String::new());
                } else {
                    let column = *content.get_or_insert(line.indent);
                    if line.indent < column {
                        self.fail(self.pos, "less indented than its block scalar");
                    }
                    body.push(line.raw[column..].to_owned());
                }
                self.pos += 1;
            }
            while body.last().is_some_and(String::is_empty) {
                body.pop();
            }
            let mut out = String::new();
            for (i, line) in body.iter().enumerate() {
                if i > 0 {
                    match (folded, body[i - 1].is_empty(), line.is_empty()) {
                        (false, _, _) | (true, _, true) => out.push('\n'),
                        (true, false, false) => out.push(' '),
                        (true, true, false) => {}
                    }
                }
                out.push_str(line);
            }
            if chomp != "-" {
                out.push('\n');
            }
            Value::String(out)
        }
    }

    /// A value in flow style: `[a, b]`, `{ k: v }`, quoted or plain scalars, short tags.
    struct Flow {
        chars: Vec<char>,
        at: usize,
        line: usize,
    }

    impl Flow {
        fn fail(&self, what: &str) -> ! {
            let text: String = self.chars.iter().collect();
            panic!(
                "template.yaml line {}: {what} at column {} of {text:?}",
                self.line, self.at
            )
        }

        fn skip_spaces(&mut self) {
            while self.peek().is_some_and(char::is_whitespace) {
                self.at += 1;
            }
        }

        fn peek(&self) -> Option<char> {
            self.chars.get(self.at).copied()
        }

        /// `in_flow`: inside brackets, where `,`, `]` and `}` end a plain scalar.
        fn value(&mut self, in_flow: bool) -> Value {
            self.skip_spaces();
            match self.peek() {
                Some('!') => {
                    self.at += 1;
                    let start = self.at;
                    while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                        self.at += 1;
                    }
                    let name: String = self.chars[start..self.at].iter().collect();
                    if name.is_empty() || !self.peek().is_some_and(char::is_whitespace) {
                        self.fail("a tag name and a space");
                    }
                    let arg = self.value(in_flow);
                    tagged(&name, arg)
                }
                Some('[') => {
                    self.at += 1;
                    let mut items = Vec::new();
                    loop {
                        self.skip_spaces();
                        match self.peek() {
                            Some(']') => break,
                            None => self.fail("`]` missing"),
                            _ => items.push(self.value(true)),
                        }
                        self.skip_spaces();
                        match self.peek() {
                            Some(',') => self.at += 1,
                            Some(']') => {}
                            _ => self.fail("`,` or `]` expected"),
                        }
                    }
                    self.at += 1;
                    Value::Array(items)
                }
                Some('{') => {
                    self.at += 1;
                    let mut map = Map::new();
                    loop {
                        self.skip_spaces();
                        match self.peek() {
                            Some('}') => break,
                            None => self.fail("`}` missing"),
                            _ => {}
                        }
                        let Value::String(key) = self.value(true) else {
                            self.fail("a key")
                        };
                        self.skip_spaces();
                        if self.peek() != Some(':') {
                            self.fail("`:` expected");
                        }
                        self.at += 1;
                        let value = self.value(true);
                        if map.insert(key.clone(), value).is_some() {
                            self.fail(&format!("duplicate key {key}"));
                        }
                        self.skip_spaces();
                        match self.peek() {
                            Some(',') => self.at += 1,
                            Some('}') => {}
                            _ => self.fail("`,` or `}` expected"),
                        }
                    }
                    self.at += 1;
                    Value::Object(map)
                }
                Some('"') => {
                    self.at += 1;
                    let mut out = String::new();
                    loop {
                        match self.peek() {
                            None => self.fail("an unclosed \""),
                            Some('"') => break,
                            Some('\\') => {
                                self.at += 1;
                                out.push(match self.peek() {
                                    Some('n') => '\n',
                                    Some('t') => '\t',
                                    Some(c @ ('"' | '\\' | '/')) => c,
                                    _ => self.fail("an escape other than \\n \\t \\\" \\\\ \\/"),
                                });
                            }
                            Some(c) => out.push(c),
                        }
                        self.at += 1;
                    }
                    self.at += 1;
                    Value::String(out)
                }
                Some('\'') => {
                    self.at += 1;
                    let mut out = String::new();
                    loop {
                        match self.peek() {
                            None => self.fail("an unclosed '"),
                            Some('\'') if self.chars.get(self.at + 1) == Some(&'\'') => {
                                out.push('\'');
                                self.at += 1;
                            }
                            Some('\'') => break,
                            Some(c) => out.push(c),
                        }
                        self.at += 1;
                    }
                    self.at += 1;
                    Value::String(out)
                }
                Some('&' | '*' | '@' | '`' | '%' | '|' | '>') => {
                    self.fail("an anchor, alias or reserved indicator")
                }
                Some(_) => {
                    let start = self.at;
                    while let Some(c) = self.peek() {
                        if in_flow && matches!(c, ',' | ']' | '}') {
                            break;
                        }
                        let ends_key = c == ':'
                            && self
                                .chars
                                .get(self.at + 1)
                                .is_none_or(|next| next.is_whitespace());
                        if ends_key {
                            if in_flow {
                                break;
                            }
                            self.fail("`: ` inside a plain scalar");
                        }
                        self.at += 1;
                    }
                    let text: String = self.chars[start..self.at].iter().collect();
                    Value::String(text.trim_end().to_owned())
                }
                None => self.fail("a value expected"),
            }
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn template() -> Value {
    yaml::parse(&read("template.yaml"))
}

fn resources(template: &Value) -> &Map<String, Value> {
    template["Resources"]
        .as_object()
        .expect("a Resources section")
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    resources(template)
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .map(|(id, resource)| (id.as_str(), resource))
        .collect()
}

/// A SAM function as these tests see it.
#[derive(Debug)]
struct Function {
    id: String,
    binary: String,
    /// (method, path) of each HttpApi event.
    routes: Vec<(String, String)>,
    statements: Vec<Value>,
    /// The function's own `Timeout`, when it overrides the global one.
    timeout: Option<u64>,
}

fn functions(template: &Value) -> Vec<Function> {
    of_type(template, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, resource)| {
            let binary = resource
                .pointer("/Metadata/BuildProperties/Binary")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{id}: no Metadata.BuildProperties.Binary"))
                .to_owned();
            let properties = &resource["Properties"];
            let events = properties["Events"]
                .as_object()
                .unwrap_or_else(|| panic!("{id}: no Events"));
            let routes = events
                .iter()
                .map(|(name, event)| {
                    assert_eq!(event["Type"], "HttpApi", "{id}.{name}: only HttpApi events");
                    let route = &event["Properties"];
                    assert_eq!(
                        route["ApiId"],
                        json!({"Ref": "HttpApi"}),
                        "{id}.{name}: every route on the one HTTP API"
                    );
                    let field = |name: &str| route[name].as_str().unwrap_or_default().to_owned();
                    (field("Method").to_ascii_uppercase(), field("Path"))
                })
                .collect();
            let mut statements = Vec::new();
            for policy in properties["Policies"]
                .as_array()
                .unwrap_or_else(|| panic!("{id}: no Policies"))
            {
                // Inline statements only: a managed policy or a SAM policy template would grant
                // what these tests cannot see.
                match policy.get("Statement") {
                    Some(Value::Array(list)) => statements.extend(list.iter().cloned()),
                    Some(statement) => statements.push(statement.clone()),
                    None => panic!("{id}: a policy that is not an inline Statement: {policy}"),
                }
            }
            let timeout = properties.get("Timeout").map(|t| {
                t.as_str()
                    .and_then(|t| t.parse().ok())
                    .expect("a Timeout in seconds")
            });
            Function {
                id: id.to_owned(),
                binary,
                routes,
                statements,
                timeout,
            }
        })
        .collect()
}

fn function<'a>(functions: &'a [Function], binary: &str) -> &'a Function {
    functions
        .iter()
        .find(|f| f.binary == binary)
        .unwrap_or_else(|| panic!("no SAM function builds the binary {binary}"))
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
        let function = function(&functions, dir);
        // Preflights (OPTIONS) are held to the local API's routes below.
        let served: Vec<_> = function
            .routes
            .iter()
            .filter(|(method, _)| method != "OPTIONS")
            .cloned()
            .collect();
        assert_eq!(
            served,
            vec![(endpoint.method().to_string(), endpoint.path().to_owned())],
            "{} must serve exactly {} {}",
            function.id,
            endpoint.method(),
            endpoint.path()
        );
        let main = read(&format!("functions/{dir}/src/main.rs"));
        // Its endpoint's type, not an `Endpoint` value: with the type, its binary links this
        // endpoint's handler alone.
        assert!(
            main.contains(&format!("lambda::run(state, only::{endpoint:?})"))
                && !main.contains("Endpoint::"),
            "functions/{dir}/src/main.rs must run only::{endpoint:?}"
        );
    }
    let routes: Vec<_> = functions.iter().flat_map(|f| f.routes.clone()).collect();
    let unique: BTreeSet<_> = routes.iter().collect();
    assert_eq!(
        unique.len(),
        routes.len(),
        "a route served twice: {routes:?}"
    );
}

/// `sam build` compiles nothing: every function is `BuildMethod: makefile`, and the
/// `build-<LogicalId>` target sam runs for it (mk/sam.mk) copies the bootstrap of its own binary,
/// for the architecture it is deployed on, out of what `make build` compiled for all functions
/// at once. A copy-paste slip there would deploy one endpoint's code behind another's route.
/// Read through `make -n`, so the recipe is the one make would run.
#[test]
fn sam_packages_each_function_from_its_own_prebuilt_bootstrap() {
    let template = template();
    let binaries: Vec<String> = functions(&template).into_iter().map(|f| f.binary).collect();
    for (id, resource) in of_type(&template, "AWS::Serverless::Function") {
        assert_eq!(
            resource.pointer("/Metadata/BuildMethod"),
            Some(&json!("makefile")),
            "{id}: sam build must only package what make build compiled (BuildMethod: makefile)"
        );
        let binary = resource
            .pointer("/Metadata/BuildProperties/Binary")
            .and_then(Value::as_str)
            .expect("checked by functions()");
        let architectures = resource
            .pointer("/Properties/Architectures")
            .or_else(|| template.pointer("/Globals/Function/Architectures"))
            .unwrap_or_else(|| panic!("{id}: no Architectures"));
        let [arch] = architectures.as_array().expect("a list").as_slice() else {
            panic!("{id}: one architecture: {architectures}");
        };
        let arch = arch.as_str().expect("a string");

        let out = std::process::Command::new("make")
            .args(["-n", "--no-print-directory", &format!("build-{id}")])
            .arg("ARTIFACTS_DIR=/artifacts")
            .env("CARGO_TARGET_DIR", "/target")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .current_dir(ROOT)
            .output()
            .expect("make runs");
        let recipe = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "make -n build-{id}: sam build runs it for {id}; mk/sam.mk must have it\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let own = format!("/target/lambda-{arch}/{binary}/bootstrap\"");
        assert!(
            recipe.contains(&own) && recipe.contains("/artifacts/bootstrap"),
            "make build-{id} must copy {own} to $ARTIFACTS_DIR/bootstrap:\n{recipe}"
        );
        for other in binaries.iter().filter(|b| *b != binary) {
            assert!(
                !recipe.contains(&format!("/{other}/bootstrap")),
                "make build-{id} packages {other}, not {binary}:\n{recipe}"
            );
        }
    }
}

/// The local API's routes, `[workspace.metadata.lambda.watch.router]` of Cargo.toml, as
/// (method, path, function).
fn watch_routes() -> BTreeSet<(String, String, String)> {
    let manifest = read("Cargo.toml");
    let table = manifest
        .split("\n[workspace.metadata.lambda.watch.router]\n")
        .nth(1)
        .expect("a [workspace.metadata.lambda.watch.router] table in Cargo.toml");
    let mut routes = BTreeSet::new();
    let mut path = None;
    for line in table.lines().map(str::trim) {
        if line.starts_with('[') {
            break; // the next table
        }
        if line.is_empty() || line.starts_with('#') || line == "]" {
            continue;
        }
        if let Some(key) = line.strip_suffix("= [") {
            path = Some(key.trim().trim_matches('"').to_owned());
            continue;
        }
        assert!(line.starts_with('{'), "Cargo.toml router: {line:?}");
        let field = |name: &str| {
            let start = line
                .find(&format!("{name} = \""))
                .unwrap_or_else(|| panic!("Cargo.toml router: no {name} in {line:?}"));
            let rest = &line[start + name.len() + 4..];
            rest.split('"').next().unwrap().to_owned()
        };
        let path = path.clone().expect("a path before its routes");
        routes.insert((field("method"), path, field("function")));
    }
    routes
}

/// Every value under a key named one of `names`, with where it is.
fn find_keys<'a>(value: &'a Value, at: &str, names: &[&str], out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let here = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                if names.contains(&key.as_str()) {
                    out.push((here.clone(), inner));
                }
                find_keys(inner, &here, names, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_keys(item, &format!("{at}[{i}]"), names, out);
            }
        }
        _ => {}
    }
}

/// Deployed and local APIs behave alike: the same routes reach the same functions, OPTIONS
/// included, and the functions' origin check is the only one. With a CorsConfiguration, API
/// Gateway answers every preflight itself and drops the functions' CORS headers.
#[test]
fn the_deployed_routes_are_the_local_ones_and_the_functions_own_cors() {
    let template = template();
    let deployed: BTreeSet<(String, String, String)> = functions(&template)
        .into_iter()
        .flat_map(|f| {
            let binary = f.binary;
            f.routes
                .into_iter()
                .map(move |(m, p)| (m, p, binary.clone()))
        })
        .collect();
    let local = watch_routes();
    let mut problems = Vec::new();
    let only_local: Vec<_> = local.difference(&deployed).collect();
    let only_deployed: Vec<_> = deployed.difference(&local).collect();
    if !only_local.is_empty() || !only_deployed.is_empty() {
        problems.push(format!(
            "template.yaml's routes differ from Cargo.toml's watch router (method, path, \
             function):\nonly local: {only_local:?}\nonly deployed: {only_deployed:?}"
        ));
    }

    let mut found = Vec::new();
    find_keys(&template, "", &["CorsConfiguration", "Cors"], &mut found);
    for (at, _) in &found {
        problems.push(format!(
            "{at}: API Gateway would answer preflights itself and drop the functions' CORS headers"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A reference to a name (a resource, a parameter) from one place of the template, with the
/// conditions known to hold there.
#[derive(Debug)]
struct Reference {
    target: String,
    at: String,
    holds: Vec<String>,
}

/// Every `Ref`, `Fn::GetAtt`, `${…}` of `Fn::Sub` and `DependsOn` in Globals, Resources and
/// Outputs. A resource's or output's `Condition` holds inside it, an `Fn::If`'s condition in its
/// first branch.
fn references(template: &Value) -> Vec<Reference> {
    fn walk(value: &Value, at: &str, holds: &mut Vec<String>, out: &mut Vec<Reference>) {
        let mut push = |target: &str| {
            out.push(Reference {
                target: target.to_owned(),
                at: at.to_owned(),
                holds: holds.clone(),
            })
        };
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().unwrap();
                match (key.as_str(), arg) {
                    ("Ref", Value::String(target)) => push(target),
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        push(parts[0].as_str().expect("Fn::GetAtt of a resource name"))
                    }
                    ("Fn::Sub", _) => {
                        let (text, variables) = match arg {
                            Value::String(text) => (text.as_str(), None),
                            Value::Array(parts) => (parts[0].as_str().unwrap(), parts.get(1)),
                            other => panic!("{at}: Fn::Sub of {other}"),
                        };
                        for name in text.split("${").skip(1).filter_map(|s| s.split_once('}')) {
                            let name = name.0;
                            let bound = variables.is_some_and(|v| v.get(name).is_some());
                            if !name.starts_with('!') && !bound {
                                push(name.split('.').next().unwrap());
                            }
                        }
                        if let Some(variables) = variables {
                            walk(variables, &format!("{at}.Fn::Sub"), holds, out);
                        }
                    }
                    ("Fn::If", Value::Array(branches)) if branches.len() == 3 => {
                        let condition = branches[0].as_str().expect("Fn::If on a condition name");
                        holds.push(condition.to_owned());
                        walk(&branches[1], &format!("{at}.Fn::If[1]"), holds, out);
                        holds.pop();
                        walk(&branches[2], &format!("{at}.Fn::If[2]"), holds, out);
                    }
                    _ => walk(arg, &format!("{at}.{key}"), holds, out),
                }
            }
            Value::Object(map) => {
                for (key, inner) in map {
                    walk(inner, &format!("{at}.{key}"), holds, out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{at}[{i}]"), holds, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for section in ["Globals", "Resources", "Outputs"] {
        let Some(entries) = template.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (id, entry) in entries {
            let at = format!("{section}.{id}");
            let mut holds: Vec<String> = match (section, entry.get("Condition")) {
                ("Globals", _) | (_, None) => Vec::new(),
                (_, Some(condition)) => vec![condition.as_str().expect("a condition name").into()],
            };
            for target in match entry.get("DependsOn") {
                Some(Value::String(one)) => vec![one.clone()],
                Some(Value::Array(many)) => many
                    .iter()
                    .map(|d| d.as_str().expect("a resource name").to_owned())
                    .collect(),
                _ => Vec::new(),
            } {
                out.push(Reference {
                    target,
                    at: format!("{at}.DependsOn"),
                    holds: holds.clone(),
                });
            }
            walk(entry, &at, &mut holds, &mut out);
        }
    }
    out
}

/// The template as deployed with `condition` decided: the resources and outputs it leaves out
/// dropped, its `Fn::If`s resolved, `AWS::NoValue` removed.
fn decide(template: &Value, condition: &str, holds: bool) -> Value {
    fn resolve(value: &Value, condition: &str, holds: bool) -> Option<Value> {
        let no_value = json!({"Ref": "AWS::NoValue"});
        let resolved = match value {
            Value::Object(map) => match map.get("Fn::If").and_then(Value::as_array) {
                Some(branches) if map.len() == 1 && branches[0] == condition => {
                    return resolve(&branches[if holds { 1 } else { 2 }], condition, holds);
                }
                _ => Value::Object(
                    map.iter()
                        .filter_map(|(k, v)| Some((k.clone(), resolve(v, condition, holds)?)))
                        .collect(),
                ),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .filter_map(|v| resolve(v, condition, holds))
                    .collect(),
            ),
            other => other.clone(),
        };
        (resolved != no_value).then_some(resolved)
    }
    let mut decided = resolve(template, condition, holds).unwrap();
    for section in ["Resources", "Outputs"] {
        if let Some(entries) = decided.get_mut(section).and_then(Value::as_object_mut) {
            entries.retain(|_, e| holds || e.get("Condition").is_none_or(|c| c != condition));
        }
    }
    decided
}

/// The table is retained when the stack is deleted, so a new stack adopts it by name
/// (`ExistingTableName`) instead of creating one, which would fail on the name. On both paths
/// the functions use one table: their SESSION_TABLE, their permissions and the output agree.
#[test]
fn the_table_is_created_or_adopted_and_every_use_follows() {
    let template = template();
    let mut problems = Vec::new();
    match template.pointer("/Parameters/ExistingTableName") {
        None => problems.push("no parameter ExistingTableName: the retained table to adopt".into()),
        Some(parameter) if parameter["Default"] != "" => {
            problems.push("ExistingTableName: empty (the default) creates the table".into())
        }
        Some(_) => {}
    }
    let create = template.pointer("/Conditions/CreateTable");
    let empty = [
        json!({"Fn::Equals": [{"Ref": "ExistingTableName"}, ""]}),
        json!({"Fn::Equals": ["", {"Ref": "ExistingTableName"}]}),
    ];
    if !create.is_some_and(|c| empty.contains(c)) {
        problems.push(format!(
            "no condition CreateTable (ExistingTableName is empty): {create:?}"
        ));
    }
    let table = &resources(&template)["SessionTable"];
    if table["Condition"] != "CreateTable" {
        problems.push("SessionTable: not under the condition CreateTable".into());
    }
    if table["DeletionPolicy"] != "Retain" {
        problems.push("SessionTable: DeletionPolicy Retain, so sessions outlive the stack".into());
    }
    for reference in references(&template) {
        if reference.target == "SessionTable" && !reference.holds.iter().any(|c| c == "CreateTable")
        {
            problems.push(format!(
                "{}: SessionTable used outside CreateTable or an Fn::If on it",
                reference.at
            ));
        }
    }

    // Both paths: the functions' table, their permissions and the output name one table.
    let adopted_arn = json!({"Fn::Sub":
        "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${ExistingTableName}"});
    for (creates, name, arn) in [
        (
            true,
            json!({"Ref": "SessionTable"}),
            json!({"Fn::GetAtt": ["SessionTable", "Arn"]}),
        ),
        (false, json!({"Ref": "ExistingTableName"}), adopted_arn),
    ] {
        let path = if creates { "created" } else { "adopted" };
        let deployed = decide(&template, "CreateTable", creates);
        for (what, pointer) in [
            (
                "SESSION_TABLE",
                "/Globals/Function/Environment/Variables/SESSION_TABLE",
            ),
            ("the TableName output", "/Outputs/TableName/Value"),
        ] {
            let value = deployed.pointer(pointer);
            if value != Some(&name) {
                problems.push(format!("{path}: {what} is {value:?}, not {name}"));
            }
        }
        for function in functions(&deployed) {
            for statement in &function.statements {
                if statement["Resource"] != arn {
                    problems.push(format!(
                        "{path}: {} acts on {}, not {arn}",
                        function.binary, statement["Resource"]
                    ));
                }
            }
        }
        if !creates {
            for reference in references(&deployed) {
                if reference.target == "SessionTable" {
                    problems.push(format!("{path}: {}: SessionTable still used", reference.at));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// An egress rule and the security group it belongs to.
struct Egress {
    group: String,
    at: String,
    rule: Value,
}

/// The security group a `GroupId`-like value names: `!Ref G` or `!GetAtt G.GroupId`.
fn group_named(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => match (map.get("Ref"), map.get("Fn::GetAtt")) {
            (Some(Value::String(group)), _) => Some(group.clone()),
            (_, Some(Value::Array(parts)))
                if parts.get(1).and_then(Value::as_str) == Some("GroupId") =>
            {
                parts[0].as_str().map(str::to_owned)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The functions reach what they use and nothing else: the cache's group on its ports, and
/// HTTPS (DynamoDB through the gateway endpoint, Clerk's JWKS when used). A group that lists no
/// egress rule gets EC2's allow-all one, so each group lists its own.
#[test]
fn the_functions_reach_only_the_cache_and_https() {
    let template = template();
    let mut problems = Vec::new();
    let mut egress = Vec::new();
    for (id, group) in of_type(&template, "AWS::EC2::SecurityGroup") {
        match group.pointer("/Properties/SecurityGroupEgress") {
            Some(Value::Array(rules)) => {
                egress.extend(rules.iter().enumerate().map(|(i, r)| Egress {
                    group: id.to_owned(),
                    at: format!("{id}.SecurityGroupEgress[{i}]"),
                    rule: r.clone(),
                }))
            }
            _ => problems.push(format!(
                "{id}: no SecurityGroupEgress, so EC2 allows all egress"
            )),
        }
    }
    for (id, resource) in of_type(&template, "AWS::EC2::SecurityGroupEgress") {
        let rule = resource["Properties"].clone();
        let group = group_named(&rule["GroupId"]).unwrap_or_else(|| panic!("{id}: GroupId"));
        egress.push(Egress {
            group,
            at: id.to_owned(),
            rule,
        });
    }
    let https = |rule: &Value| {
        rule["IpProtocol"] == "tcp" && rule["FromPort"] == "443" && rule["ToPort"] == "443"
    };
    for Egress { at, rule, .. } in &egress {
        let protocol = rule["IpProtocol"].as_str().unwrap_or_default();
        if protocol == "-1" || protocol.eq_ignore_ascii_case("all") {
            problems.push(format!("{at}: every protocol (IpProtocol -1)"));
        }
        let anywhere = rule["CidrIp"] == "0.0.0.0/0" || rule["CidrIpv6"] == "::/0";
        if anywhere && !https(rule) {
            problems.push(format!("{at}: to anywhere, and not HTTPS: {rule}"));
        }
    }
    // The functions' group is the one the cache lets in; it must still reach the cache and
    // DynamoDB.
    let caches = of_type(&template, "AWS::ElastiCache::ServerlessCache");
    assert!(!caches.is_empty(), "a serverless cache");
    for (id, cache) in caches {
        let groups = cache
            .pointer("/Properties/SecurityGroupIds")
            .and_then(Value::as_array);
        for cache_group in groups.into_iter().flatten().filter_map(group_named) {
            let ingress = resources(&template)[&cache_group]
                .pointer("/Properties/SecurityGroupIngress")
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{cache_group}: the cache's group lets nothing in"));
            for rule in ingress {
                let source = group_named(&rule["SourceSecurityGroupId"])
                    .unwrap_or_else(|| panic!("{cache_group}: ingress from a group: {rule}"));
                let reaches = egress.iter().any(|e| {
                    e.group == source
                        && group_named(&e.rule["DestinationSecurityGroupId"]).as_ref()
                            == Some(&cache_group)
                        && ["IpProtocol", "FromPort", "ToPort"]
                            .iter()
                            .all(|k| e.rule[k] == rule[k])
                });
                if !reaches {
                    problems.push(format!(
                        "{source}: no egress to {cache_group} ({id}) on {}-{}",
                        rule["FromPort"], rule["ToPort"]
                    ));
                }
                if !egress.iter().any(|e| e.group == source && https(&e.rule)) {
                    problems.push(format!("{source}: no HTTPS (tcp 443) egress for DynamoDB"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The values a limit can take: a literal, or a Number parameter's bounds and default.
fn limit_values(value: &Value, template: &Value) -> Result<Vec<(String, u64)>, String> {
    let number = |v: &Value, what: &str| {
        v.as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(format!("{what} is not a whole number: {v}"))
    };
    match value.get("Ref").and_then(Value::as_str) {
        None => Ok(vec![("literal".into(), number(value, "the limit")?)]),
        Some(name) => {
            let parameter = &template["Parameters"][name];
            if parameter["Type"] != "Number" {
                return Err(format!("{name} is not a Number parameter"));
            }
            ["MinValue", "MaxValue", "Default"]
                .iter()
                .map(|k| {
                    Ok((
                        format!("{name} {k}"),
                        number(&parameter[k], &format!("{name} {k}"))?,
                    ))
                })
                .collect()
        }
    }
}

/// ElastiCache Serverless grows, and bills, without limit unless it has maximums; each lies in
/// the range ElastiCache takes (1 to 5,000 GB, 1,000 to 15,000,000 ECPU per second), whatever
/// the operator sets. The cache is reached over TLS only.
#[test]
fn the_cache_is_bounded_and_reached_over_tls() {
    let template = template();
    let mut problems = Vec::new();
    for (id, cache) in of_type(&template, "AWS::ElastiCache::ServerlessCache") {
        let Some(limits) = cache.pointer("/Properties/CacheUsageLimits") else {
            problems.push(format!(
                "{id}: no CacheUsageLimits, so no ceiling on storage or ECPUs"
            ));
            continue;
        };
        if limits.pointer("/DataStorage/Unit").and_then(Value::as_str) != Some("GB") {
            problems.push(format!("{id}: DataStorage.Unit must be GB"));
        }
        for (pointer, what, low, high) in [
            ("/DataStorage/Maximum", "data storage (GB)", 1, 5_000),
            (
                "/ECPUPerSecond/Maximum",
                "ECPU per second",
                1_000,
                15_000_000,
            ),
        ] {
            let Some(value) = limits.pointer(pointer) else {
                problems.push(format!("{id}: no {what} maximum"));
                continue;
            };
            match limit_values(value, &template) {
                Err(e) => problems.push(format!("{id}: {what}: {e}")),
                Ok(values) => {
                    for (source, n) in values.iter().filter(|(_, n)| !(low..=high).contains(n)) {
                        problems.push(format!(
                            "{id}: {what} maximum {n} ({source}) outside {low}..={high}"
                        ));
                    }
                }
            }
        }
    }
    let url = template
        .pointer("/Globals/Function/Environment/Variables/REDIS_URL/Fn::If/1/Fn::Sub")
        .and_then(Value::as_str);
    if !url.is_some_and(|u| u.starts_with("rediss://")) {
        problems.push(format!("REDIS_URL must use TLS (rediss://): {url:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The config the functions run with: the literal environment values of the template's globals
/// (references to parameters are left to their defaults, none of which is a time budget).
fn deployed_config(template: &Value) -> shared::Config {
    let variables = template
        .pointer("/Globals/Function/Environment/Variables")
        .and_then(Value::as_object)
        .expect("Globals.Function.Environment.Variables");
    let vars: HashMap<String, String> = variables
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
        .collect();
    for budget in [
        "REDIS_CONNECT_TIMEOUT_MS",
        "REDIS_COMMAND_TIMEOUT_MS",
        "DYNAMODB_TIMEOUT_MS",
    ] {
        assert!(
            vars.contains_key(budget) || !variables.contains_key(budget),
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
    let global: u64 = template
        .pointer("/Globals/Function/Timeout")
        .and_then(Value::as_str)
        .expect("Globals.Function.Timeout")
        .parse()
        .unwrap();
    let functions = functions(&template);
    let config = deployed_config(&template);
    for case in shared::budget::worst_cases(&config) {
        let binary = case.endpoint.function();
        let function = function(&functions, binary);
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

/// Runs the deploy rehearsal on `template.yaml` with `flag`. It needs the SAM translator that
/// aws-sam-cli installs into `.venv`: `make venv` (which `make test` runs) puts it there.
fn rehearse(flag: &str) -> (bool, String) {
    let python = Path::new(ROOT).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: the deploy rehearsal runs the SAM transform (samtranslator, from \
         aws-sam-cli) in .venv; run `make venv` (make test does)",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(Path::new(ROOT).join("tools/deploy_rehearsal.py"))
        .arg(flag)
        .arg(Path::new(ROOT).join("template.yaml"))
        .current_dir(ROOT)
        .output()
        .expect("tools/deploy_rehearsal.py runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "tools/deploy_rehearsal.py {flag} broke: {:?}\n{stderr}",
        out.status
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &stderr,
    )
}

/// The template after the SAM transform breaks none of the rehearsal's rules in any deployment,
/// and every function of every deployment starts: its environment, as CloudFormation would set
/// it, is a configuration `shared::Config` accepts, with the stores of its deployment (DynamoDB
/// always, Redis in front exactly where the stack has the cache) and a Clerk key.
#[test]
fn the_deploy_rehearsal_finds_nothing_and_every_function_starts() {
    let (clean, output) = rehearse("--json");
    let report: Value = serde_json::from_str(&output)
        .unwrap_or_else(|e| panic!("the rehearsal's JSON report: {e}\n{output}"));
    let findings: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| format!("{} {}: {}", f["rule"], f["where"], f["message"]))
        .collect();
    assert!(
        clean && findings.is_empty(),
        "the deploy rehearsal (tools/deploy_rehearsal.py) found:\n{}",
        findings.join("\n")
    );
    let deployments = report["deployments"].as_array().expect("deployments");
    assert!(deployments.len() >= 2, "{deployments:?}");
    let endpoints: BTreeSet<&str> = Endpoint::ALL.iter().map(|e| e.function()).collect();
    for deployment in deployments {
        let label = deployment["parameters"].to_string();
        let with_cache = deployment["parameters"]["RedisMode"] == "serverless";
        let environments = deployment["environments"]
            .as_object()
            .expect("environments");
        let deployed: BTreeSet<&str> = environments.keys().map(String::as_str).collect();
        assert_eq!(deployed, endpoints, "{label}: every endpoint deployed");
        for (function, variables) in environments {
            let vars: HashMap<String, String> = variables
                .as_object()
                .expect("variables")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_owned()))
                .collect();
            let config = Config::from_map(&vars)
                .unwrap_or_else(|e| panic!("{label} {function}: refuses to start: {e}"));
            assert_eq!(config.store, StoreKind::Auto, "{label} {function}");
            assert!(config.session_table.is_some(), "{label} {function}");
            assert_eq!(
                config.redis_url.is_some(),
                with_cache,
                "{label} {function}: Redis in front exactly where the stack has the cache"
            );
            assert!(
                matches!(config.clerk_key, ClerkKey::Pem(_)),
                "{label} {function}: {:?}",
                config.clerk_key
            );
            assert!(!config.allowed_origins.is_empty(), "{label} {function}");
        }
    }
}

/// Every rule of the rehearsal can fail: the rehearsal breaks a copy of the template once per
/// rule (an Fn::Join in `Rules`, a variable config.rs does not read, dynamodb:*, a cycle, ...)
/// and each break must be reported by the rule it breaks.
#[test]
fn every_deploy_rehearsal_rule_reports_its_break() {
    let (proven, output) = rehearse("--prove");
    assert!(proven, "a break the rehearsal missed:\n{output}");
    assert!(output.contains("caught"), "{output}");
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
        // libFuzzer's kept inputs (shared/fuzz/corpus/) are machine-made bytes, not prose.
        if path.is_empty() || path.ends_with(".lock") || path.starts_with("shared/fuzz/corpus/") {
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

/// One crypto provider for the whole graph: aws-lc-rs (the SDK's TLS, rustls for redis and
/// reqwest, jsonwebtoken's RS256). `ring` and RustCrypto's `rsa` (RUSTSEC-2023-0071, flagged by
/// every audit) must not come back through a feature default, nor the SSO clients aws-config
/// pulls in with its `sso` feature. Cargo.lock keeps `ring` as an optional dependency that no
/// feature turns on, so it is `cargo tree` that says what is compiled.
#[test]
fn one_crypto_provider_and_no_unused_credential_providers() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for package in ["aws-lc-rs", "ring", "rsa", "aws-sdk-sso", "aws-sdk-ssooidc"] {
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(root)
            // Not --offline: `--target all` needs crates of other platforms, which a build on
            // this one never downloaded.
            .args(["tree", "--locked", "--workspace", "--target", "all"])
            .args([
                "--edges",
                "normal,build,dev",
                "--prefix",
                "none",
                "--invert",
                package,
            ])
            .output()
            .expect("cargo tree runs");
        let tree = String::from_utf8_lossy(&out.stdout);
        let compiled = out.status.success() && !tree.trim().is_empty();
        assert_eq!(
            compiled,
            package == "aws-lc-rs",
            "`cargo tree -i {package} --target all`:\n{tree}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
