#!/usr/bin/env python3
"""The deploy rehearsal: template.yaml through the SAM transform, then held to our own rules.

No AWS account is reached. `samtranslator` (the library behind the AWS::Serverless transform,
installed with aws-sam-cli into .venv) turns the template into the CloudFormation that a deploy
would hand CloudFormation, with the managed-policy lookup answered offline. The result is then
checked, for every combination of the parameters the template's Conditions read (each a
"deployment"), by rules that cfn-lint and `sam validate` do not know and that CloudFormation, API
Gateway or this service would otherwise only break on in an account:

  transform        the SAM transform succeeds
  rules            Rules use rule functions only, Ref parameters only, and pass in every deployment
  cors-origins     an HTTP API CORS configuration, if any, lists origins API Gateway accepts
  environment      each function's variables are ones shared/src/config.rs reads, it gets what its
                   endpoint needs (the store of its deployment, a Clerk key, the origins, ...), and
                   they fit Lambda's 4 KB
  least-privilege  each function may use exactly its endpoint's DynamoDB actions, on its own table;
                   UpdateItem of the epoch bumpers only on the EPOCH#<i> items (dynamodb:LeadingKeys)
  log-retention    every function logs to a log group of the stack that has a retention
  alarms           the API's 5xx and the store fallbacks are alarmed on, on metrics that exist
  references       every Ref, Fn::GetAtt, ${} of Fn::Sub and DependsOn names a parameter, a pseudo
                   parameter or a resource that exists in that deployment
  conditions       every condition used is defined
  no-cycle         no circular dependency between resources (DependsOn, Ref, Fn::GetAtt, Fn::Sub)

Usage:
  deploy_rehearsal.py [TEMPLATE]          rehearse (default: template.yaml); exit 1 on a finding
  deploy_rehearsal.py --json [TEMPLATE]   the same, as JSON, with each deployment's resolved
                                          function environments (shared/tests/template.rs reads
                                          them back through the service's own config parser)
  deploy_rehearsal.py --prove [TEMPLATE]  break the template once per rule and show that each
                                          rule reports its break; exit 1 if one does not
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# What the rules hold the template to
# --------------------------------------------------------------------------------------------

# The rules, as findings name them (the module's docstring says what each holds).
RULES = ["transform", "rules", "cors-origins", "environment", "least-privilege", "log-retention",
         "alarms", "references", "conditions", "no-cycle"]

# CloudFormation's rule functions: the only functions it evaluates in Rules.
RULE_FUNCTIONS = {
    "Fn::And",
    "Fn::Contains",
    "Fn::EachMemberEquals",
    "Fn::EachMemberIn",
    "Fn::Equals",
    "Fn::Not",
    "Fn::Or",
    "Fn::RefAll",
    "Fn::ValueOf",
    "Fn::ValueOfAll",
    "Ref",
}

PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::NotificationARNs": [],
    "AWS::NoValue": None,
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/rehearsal/0",
    "AWS::StackName": "rehearsal",
    "AWS::URLSuffix": "amazonaws.com",
}

# What an operator sets on every deploy (the Rules demand a Clerk key, and a network with
# RedisMode=serverless); realistic in size, since Lambda caps a function's environment at 4 KB.
OPERATOR_INPUTS = {
    "ClerkJwtKey": "-----BEGIN PUBLIC KEY-----\\n"
    + "\\n".join(["M" + "A" * 63] * 6 + ["IDAQAB"])
    + "\\n-----END PUBLIC KEY-----",
    "ClerkIssuer": "https://clerk.example.com",
    "AllowedOrigins": "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
    "AdminUserIds": "user_admin",
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "RouteTableIds": "rtb-0123456789abcdef0",
}

# A value other than the default, for a parameter a Condition reads and that has no
# AllowedValues to take each of.
OTHER_VALUES = {
    "ExistingTableName": "css-picker-sessions-adopted",
    "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:session-alarms",
}

# The DynamoDB actions each endpoint sends (docs/both-stores.md, "What is written where"):
# (actions on any item of its table, actions on the EPOCH#<i> items only). GetItem everywhere:
# a session token is looked up, and with Redis in front the store epoch is read. The epoch
# bumpers (create, logout, logout-all, revoke, cache-put) send a TransactWriteItems of Update actions,
# which IAM authorizes as UpdateItem on each item; refresh updates sessions and never bumps.
ENDPOINT_ACTIONS = {
    "session-create": ({"GetItem", "PutItem", "Query", "BatchWriteItem"}, {"UpdateItem"}),
    "session-validate": ({"GetItem"}, set()),
    "session-refresh": ({"GetItem", "UpdateItem"}, set()),
    "session-logout": ({"GetItem", "DeleteItem"}, {"UpdateItem"}),
    "session-logout-all": ({"GetItem", "Query", "BatchWriteItem"}, {"UpdateItem"}),
    "session-stats": ({"GetItem", "Query", "Scan"}, set()),
    "session-list": ({"GetItem", "Query"}, set()),
    "session-revoke": ({"GetItem", "Query", "DeleteItem"}, {"UpdateItem"}),
    "cache-get": ({"GetItem"}, set()),
    "cache-put": ({"GetItem", "PutItem"}, {"UpdateItem"}),
}
EPOCH_ITEMS_ONLY = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["EPOCH#*"]}}

# Managed policies SAM may attach: logging always; ENI management to a function that declares a
# VpcConfig (SAM attaches it even when the VpcConfig is an Fn::If that leaves it out).
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
VPC_ACCESS = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"

# What each endpoint reads of the configuration beyond the store and the origins (which all
# need): a Clerk key where a JWT is taken, the lifetimes where a session is made, the admins
# where global stats are shown.
CLERK = {"CLERK_JWT_KEY", "CLERK_JWKS_URL", "CLERK_ISSUER"}
LIFETIMES = {"SESSION_TIMEOUT", "REMEMBER_ME_TIMEOUT", "SESSION_MAX_LIFETIME"}
ENDPOINT_NEEDS = {
    "session-create": CLERK | LIFETIMES,
    "session-validate": set(),
    "session-refresh": set(),
    "session-logout": set(),
    "session-logout-all": CLERK,
    "session-stats": CLERK | {"ADMIN_USER_IDS"},
    "session-list": CLERK,
    "session-revoke": CLERK,
    "cache-get": CLERK,
    "cache-put": CLERK,
}

# Lambda's limit on a function's environment: names and values together.
ENVIRONMENT_LIMIT_BYTES = 4096

# CloudWatch Logs' retention periods, in days.
RETENTION_DAYS = {
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
}

# --------------------------------------------------------------------------------------------
# Reading the code the template must agree with
# --------------------------------------------------------------------------------------------


def config_variables() -> set[str]:
    """The environment variables shared/src/config.rs reads (its tests excluded)."""
    source = (ROOT / "shared/src/config.rs").read_text()
    source = source.split("#[cfg(test)]")[0]
    names = set(re.findall(r'\b(?:get|number|seconds|millis|list)\(\s*"([A-Z][A-Z0-9_]*)"', source))
    if not names:
        raise SystemExit("shared/src/config.rs: no environment variable found; has it moved?")
    return names


def emitted_metrics() -> tuple[str, set[str], list[list[str]]]:
    """The EMF namespace, metric names and dimension sets of shared/src/metrics.rs."""
    source = (ROOT / "shared/src/metrics.rs").read_text().split("#[cfg(test)]")[0]
    namespace = re.search(r'pub const NAMESPACE: &str = "([^"]+)"', source)
    names = set(re.findall(r'\{\s*"Name":\s*"([A-Za-z]+)"', source))
    dimensions = re.search(r'"Dimensions":\s*(\[\[.*?\]\])', source)
    if not (namespace and names and dimensions):
        raise SystemExit("shared/src/metrics.rs: no EMF namespace, metric or dimensions found")
    return namespace.group(1), names, json.loads(dimensions.group(1))


def function_binary(id: str, resource: dict) -> str:
    """The function's binary (its folder under functions/): as its build names it, else from
    its logical id (SessionCreateFunction is session-create)."""
    binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
    if binary:
        return binary
    words = re.findall(r"[A-Z][a-z0-9]*", id.removesuffix("Function"))
    return "-".join(w.lower() for w in words)


# --------------------------------------------------------------------------------------------
# The transform
# --------------------------------------------------------------------------------------------


class TransformFailed(Exception):
    pass


def load(path: Path) -> dict:
    from samcli.yamlhelper import yaml_parse

    return yaml_parse(path.read_text())


def transform(template: dict) -> dict:
    """The CloudFormation a deploy would submit: SAM's transform, offline."""
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO_PARAMETERS["AWS::Region"])
    # The transform counts its own timings for a service it would publish them to; there is none.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform as sam_transform

    class OfflinePolicies(ManagedPolicyLoader):
        """Named managed policies resolve from the list bundled with samtranslator; this is
        asked only for a name not in it, and an account would be needed to answer."""

        def __init__(self) -> None:
            super().__init__(iam_client=None)  # type: ignore[arg-type]

        def load(self) -> dict[str, str]:
            return {}

    template = copy.deepcopy(template)
    # `sam package` (inside `sam deploy`) uploads the code and puts its S3 location here.
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = "s3://rehearsal/function.zip"
    function_globals = template.get("Globals", {}).get("Function")
    if function_globals and "CodeUri" in function_globals:
        function_globals["CodeUri"] = "s3://rehearsal/function.zip"
    try:
        return sam_transform(template, {}, OfflinePolicies())
    except InvalidDocumentException as e:
        raise TransformFailed("; ".join(cause.message for cause in e.causes)) from e
    except Exception as e:  # the transform's own bugs and unexpected shapes alike
        raise TransformFailed(f"{type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------------------------
# Intrinsic functions
# --------------------------------------------------------------------------------------------


def intrinsic(value):
    """(name, argument) when `value` is an intrinsic function call, else None."""
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
            return key, arg
    return None


def sub_names(arg) -> tuple[list[str], dict]:
    """The ${...} names of an Fn::Sub that its own variables do not bind, and those variables."""
    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
    names = [n for n in re.findall(r"\$\{([^}]*)\}", text) if not n.startswith("!")]
    return [n for n in names if n not in variables], variables


def targets(value, out: list, where: str, in_conditions: bool = False) -> None:
    """Every (kind, name, attribute, where) that `value` refers to: kind is Ref, GetAtt,
    Condition (a condition named in Fn::If or a Condition function)."""
    call = intrinsic(value)
    if call:
        name, arg = call
        if name == "Ref" and isinstance(arg, str):
            out.append(("Ref", arg, None, where))
            return
        if name == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else arg
            if isinstance(parts, list) and parts and isinstance(parts[0], str):
                attribute = parts[1] if len(parts) > 1 and isinstance(parts[1], str) else None
                out.append(("GetAtt", parts[0], attribute, where))
            return
        if name == "Fn::Sub":
            names, variables = sub_names(arg)
            for n in names:
                if "." in n:
                    out.append(("GetAtt", n.split(".", 1)[0], n.split(".", 1)[1], where))
                else:
                    out.append(("Ref", n, None, where))
            targets(variables, out, where + ".Fn::Sub")
            return
        if name == "Fn::If" and isinstance(arg, list) and arg and isinstance(arg[0], str):
            out.append(("Condition", arg[0], None, where))
            for i, branch in enumerate(arg[1:], 1):
                targets(branch, out, f"{where}.Fn::If[{i}]")
            return
        if name == "Condition" and isinstance(arg, str):
            out.append(("Condition", arg, None, where))
            return
    if isinstance(value, dict):
        for key, inner in value.items():
            targets(inner, out, f"{where}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            targets(inner, out, f"{where}[{i}]")


class Deployment:
    """One set of parameter values: conditions decided, values resolvable."""

    def __init__(self, cfn: dict, values: dict, varied: dict):
        self.cfn = cfn
        self.parameters = {}
        for name, spec in cfn.get("Parameters", {}).items():
            raw = values.get(name, spec.get("Default", ""))
            raw = "" if raw is None else str(raw)
            if spec.get("Type") == "CommaDelimitedList":
                self.parameters[name] = [item.strip() for item in raw.split(",")]
            else:
                self.parameters[name] = raw
        self.varied = varied
        # Each function's environment as deployed, filled by the environment rule.
        self.environments: dict[str, dict[str, str]] = {}
        self.label = ", ".join(f"{k}={v or '(empty)'}" for k, v in varied.items())
        self.conditions: dict[str, bool] = {}
        for name in cfn.get("Conditions", {}):
            self.condition(name)
        self.template = self.decide(cfn)
        for section in ("Resources", "Outputs"):
            entries = self.template.get(section, {})
            for id in [i for i, e in entries.items() if not self.holds(e.get("Condition"))]:
                del entries[id]

    def holds(self, condition) -> bool:
        return condition is None or self.condition(condition)

    def condition(self, name: str, seen: tuple = ()) -> bool:
        if name not in self.conditions:
            definition = self.cfn.get("Conditions", {}).get(name)
            if definition is None or name in seen:
                # An unknown (or circular) condition: the conditions rule reports it; here it
                # counts as false, so nothing under it is deployed.
                return False
            self.conditions[name] = bool(self.evaluate_condition(definition, seen + (name,)))
        return self.conditions[name]

    def evaluate_condition(self, value, seen: tuple):
        call = intrinsic(value)
        if not call:
            return value
        name, arg = call
        if name == "Condition":
            return self.condition(arg, seen)
        if name == "Fn::Equals":
            a, b = (self.evaluate_condition(v, seen) for v in arg)
            return self.value(a) == self.value(b)
        if name == "Fn::Not":
            return not self.evaluate_condition(arg[0], seen)
        if name == "Fn::And":
            return all(self.evaluate_condition(v, seen) for v in arg)
        if name == "Fn::Or":
            return any(self.evaluate_condition(v, seen) for v in arg)
        return self.value(value)

    def decide(self, value):
        """`value` with every Fn::If decided and AWS::NoValue dropped."""
        call = intrinsic(value)
        if call and call[0] == "Fn::If" and isinstance(call[1], list) and len(call[1]) == 3:
            return self.decide(call[1][1] if self.condition(call[1][0]) else call[1][2])
        if isinstance(value, dict):
            out = {}
            for key, inner in value.items():
                decided = self.decide(inner)
                if decided != {"Ref": "AWS::NoValue"}:
                    out[key] = decided
            return out
        if isinstance(value, list):
            return [d for d in (self.decide(v) for v in value) if d != {"Ref": "AWS::NoValue"}]
        return value

    def resource_value(self, id: str, attribute: str | None):
        """What CloudFormation returns for a resource: a table's name and ARN as such, a port
        as a port, anything else as a recognizable placeholder."""
        resource = self.template.get("Resources", {}).get(id)
        if resource is None:
            return f"<missing {id}>"
        if resource.get("Type") == "AWS::DynamoDB::Table":
            name = self.value(resource.get("Properties", {}).get("TableName", f"{id.lower()}"))
            if attribute == "Arn":
                return self.table_arn(name)
            return name
        if attribute and attribute.endswith("Port"):
            return "6379"
        suffix = f"-{attribute.lower().replace('.', '-')}" if attribute else ""
        return f"{id.lower()}{suffix}"

    def table_arn(self, name: str) -> str:
        p = PSEUDO_PARAMETERS
        return f"arn:{p['AWS::Partition']}:dynamodb:{p['AWS::Region']}:{p['AWS::AccountId']}:table/{name}"

    def value(self, value):
        """A decided value with its intrinsic functions evaluated, as far as they can be."""
        call = intrinsic(value)
        if call:
            name, arg = call
            if name == "Ref":
                if arg in self.parameters:
                    return self.parameters[arg]
                if arg in PSEUDO_PARAMETERS:
                    return PSEUDO_PARAMETERS[arg]
                return self.resource_value(arg, None)
            if name == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.resource_value(parts[0], parts[1] if len(parts) > 1 else None)
            if name == "Fn::Sub":
                names, variables = sub_names(arg)
                text = arg if isinstance(arg, str) else arg[0]
                bound = {k: self.value(v) for k, v in variables.items()}

                def replace(match):
                    n = match.group(1)
                    if n.startswith("!"):
                        return "${" + n[1:] + "}"
                    if n in bound:
                        return str(bound[n])
                    if "." in n:
                        return str(self.resource_value(*n.split(".", 1)))
                    return str(self.value({"Ref": n}))

                return re.sub(r"\$\{([^}]*)\}", replace, text)
            if name == "Fn::Join":
                items = self.value(arg[1])
                return str(arg[0]).join(str(self.value(i)) for i in items)
            if name == "Fn::Select":
                return self.value(self.value(arg[1])[int(self.value(arg[0]))])
            if name == "Fn::If":
                return self.value(self.decide(value))
            return value
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        return value


def deployments(cfn: dict) -> list[Deployment]:
    """Every combination of the values of the parameters that the Conditions read."""
    read: list[str] = []
    found: list = []
    targets(cfn.get("Conditions", {}), found, "Conditions")
    for kind, name, _, _ in found:
        if kind == "Ref" and name in cfn.get("Parameters", {}) and name not in read:
            read.append(name)
    choices = []
    for name in read:
        spec = cfn["Parameters"][name]
        default = str(spec.get("Default", ""))
        values = [str(v) for v in spec.get("AllowedValues", [])] or [default]
        if not spec.get("AllowedValues"):
            values.append(OTHER_VALUES.get(name, "rehearsal" if default == "" else ""))
        choices.append([(name, v) for v in values])
    out = []
    for combination in itertools.product(*choices):
        varied = dict(combination)
        out.append(Deployment(cfn, {**OPERATOR_INPUTS, **varied}, varied))
    return out


# --------------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------------


class Findings:
    def __init__(self):
        self.items: list[tuple[str, str, str]] = []

    def add(self, rule: str, where: str, message: str) -> None:
        item = (rule, where, message)
        if item not in self.items:
            self.items.append(item)

    def rules(self) -> set[str]:
        return {rule for rule, _, _ in self.items}


def rule_functions(cfn: dict, all_deployments: list[Deployment], findings: Findings) -> None:
    parameters = cfn.get("Parameters", {})

    def walk(value, where):
        call = intrinsic(value)
        if call:
            name, arg = call
            if name not in RULE_FUNCTIONS:
                findings.add("rules", where, f"{name} is not a rule function (CloudFormation "
                             f"takes only {', '.join(sorted(RULE_FUNCTIONS))} in Rules)")
            elif name == "Ref" and arg not in parameters:
                findings.add("rules", where, f"Ref {arg}: Rules may refer to parameters only")
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{where}.{key}")
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                walk(inner, f"{where}[{i}]")

    for rule_name, rule in cfn.get("Rules", {}).items():
        walk(rule, f"Rules.{rule_name}")
    if "rules" in findings.rules():
        return
    # Each rehearsed deployment is one CloudFormation lets through its Rules.
    for deployment in all_deployments:
        for rule_name, rule in cfn.get("Rules", {}).items():
            applies = "RuleCondition" not in rule or evaluate_rule(rule["RuleCondition"], deployment)
            for i, assertion in enumerate(rule.get("Assertions", []) if applies else []):
                if not evaluate_rule(assertion["Assert"], deployment):
                    findings.add("rules", f"Rules.{rule_name}.Assertions[{i}] [{deployment.label}]",
                                 f"refuses the rehearsed deployment: "
                                 f"{assertion.get('AssertDescription', '')}")


def evaluate_rule(value, deployment: Deployment):
    call = intrinsic(value)
    if not call:
        return value
    name, arg = call
    if name == "Ref":
        return deployment.parameters.get(arg)
    if name == "Fn::Equals":
        a, b = (evaluate_rule(v, deployment) for v in arg)
        return a == b
    if name == "Fn::Not":
        return not evaluate_rule(arg[0], deployment)
    if name == "Fn::And":
        return all(evaluate_rule(v, deployment) for v in arg)
    if name == "Fn::Or":
        return any(evaluate_rule(v, deployment) for v in arg)
    if name == "Fn::Contains":
        return evaluate_rule(arg[1], deployment) in evaluate_rule(arg[0], deployment)
    if name == "Fn::EachMemberEquals":
        return all(m == evaluate_rule(arg[1], deployment) for m in evaluate_rule(arg[0], deployment))
    if name == "Fn::EachMemberIn":
        allowed = evaluate_rule(arg[1], deployment)
        return all(m in allowed for m in evaluate_rule(arg[0], deployment))
    # Fn::RefAll, Fn::ValueOf, Fn::ValueOfAll read the account: taken as holding.
    return True


def api_gateway_accepts_origin(origin: str) -> bool:
    """An HTTP API's AllowOrigins entry: an exact origin, or `*`, `https://*` or `http://*`."""
    if "*" in origin:
        return origin in ("*", "https://*", "http://*")
    scheme, sep, host = origin.partition("://")
    return bool(sep and scheme and host and "/" not in host)


def cors_origins(deployment: Deployment, findings: Findings) -> None:
    for id, resource in deployment.template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::ApiGatewayV2::Api":
            continue
        properties = resource.get("Properties", {})
        configurations = [(f"{id}.CorsConfiguration", properties.get("CorsConfiguration"), "AllowOrigins",
                           "AllowCredentials")]
        body = properties.get("Body") or {}
        configurations.append((f"{id}.Body.x-amazon-apigateway-cors",
                               body.get("x-amazon-apigateway-cors"), "allowOrigins", "allowCredentials"))
        for where, cors, origins_key, credentials_key in configurations:
            if not cors:
                continue
            origins = deployment.value(cors.get(origins_key, []))
            origins = [origins] if isinstance(origins, str) else origins
            for origin in origins:
                if not api_gateway_accepts_origin(str(origin)):
                    findings.add("cors-origins", f"{where} [{deployment.label}]",
                                 f"API Gateway refuses the origin {origin!r} (an exact origin, *, "
                                 f"https://* or http://* only)")
            if deployment.value(cors.get(credentials_key)) in (True, "true") and "*" in origins:
                findings.add("cors-origins", f"{where} [{deployment.label}]",
                             "AllowCredentials with the origin * is refused")


def lambda_functions(deployment: Deployment):
    for id, resource in deployment.template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Lambda::Function":
            yield id, resource, function_binary(id, resource)


def environment(deployment: Deployment, known: set[str], findings: Findings) -> dict:
    caches = [i for i, r in deployment.template.get("Resources", {}).items()
              if r.get("Type") == "AWS::ElastiCache::ServerlessCache"]
    resolved = {}
    for id, resource, binary in lambda_functions(deployment):
        where = f"{id} [{deployment.label}]"
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        values = {name: deployment.value(v) for name, v in variables.items()}
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
        resolved[binary] = values
        for name in sorted(set(values) - known):
            findings.add("environment", where,
                         f"{name} is not read by shared/src/config.rs (it reads {', '.join(sorted(known))})")
        table = values.get("SESSION_TABLE", "")
        if not table:
            findings.add("environment", where, "SESSION_TABLE is not set: DynamoDB is the record in every mode")
        url = values.get("REDIS_URL", "")
        if caches and not url.startswith("rediss://"):
            findings.add("environment", where,
                         f"the stack has a cache ({', '.join(caches)}) but REDIS_URL is {url!r}, not a rediss:// URL")
        if not caches and url:
            findings.add("environment", where, f"no cache in this deployment, but REDIS_URL is {url!r}")
        for name in sorted({"ALLOWED_ORIGINS"} | ENDPOINT_NEEDS.get(binary, set())):
            if name not in values:
                findings.add("environment", where, f"{name} is not set, and {binary} reads it")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
        if size > ENVIRONMENT_LIMIT_BYTES:
            findings.add("environment", where,
                         f"{size} bytes of environment with the rehearsal's inputs; Lambda takes at most "
                         f"{ENVIRONMENT_LIMIT_BYTES}")
    return resolved


def statements_of(deployment: Deployment, role_id: str):
    """The statements and managed policy ARNs granted to a role of the template."""
    resources = deployment.template.get("Resources", {})
    role = resources.get(role_id, {})
    properties = role.get("Properties", {})
    statements = []
    for policy in properties.get("Policies", []):
        document = policy.get("PolicyDocument", {})
        listed = document.get("Statement", [])
        statements += listed if isinstance(listed, list) else [listed]
    managed = list(deployment.value(properties.get("ManagedPolicyArns", [])))
    for id, resource in resources.items():
        if resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = resource.get("Properties", {}).get("Roles", [])
            if {"Ref": role_id} in roles:
                document = resource["Properties"].get("PolicyDocument", {})
                listed = document.get("Statement", [])
                statements += listed if isinstance(listed, list) else [listed]
    return statements, managed


def least_privilege(deployment: Deployment, source: dict, findings: Findings) -> None:
    for id, resource, binary in lambda_functions(deployment):
        where = f"{id} [{deployment.label}]"
        properties = resource.get("Properties", {})
        role = properties.get("Role")
        role_id = role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else None
        if role_id is None or role_id not in deployment.template.get("Resources", {}):
            findings.add("least-privilege", where, f"its Role {role} is not a role of the stack, so its "
                         "permissions cannot be checked")
            continue
        statements, managed = statements_of(deployment, role_id)
        declares_vpc = "VpcConfig" in (source.get("Resources", {}).get(id, {}).get("Properties", {})
                                       ) or "VpcConfig" in source.get("Globals", {}).get("Function", {})
        allowed_managed = {BASIC_EXECUTION} | ({VPC_ACCESS} if declares_vpc else set())
        for arn in managed:
            if arn not in allowed_managed:
                findings.add("least-privilege", where, f"managed policy {arn}: grants what this rehearsal "
                             f"cannot see (only {', '.join(sorted(allowed_managed))})")
        if binary not in ENDPOINT_ACTIONS:
            findings.add("least-privilege", where, f"{binary} is not an endpoint this rehearsal knows")
            continue
        any_item, epoch_only = ENDPOINT_ACTIONS[binary]
        table = properties.get("Environment", {}).get("Variables", {}).get("SESSION_TABLE")
        table_arn = deployment.table_arn(deployment.value(table)) if table else None
        granted_any, granted_epoch = set(), set()
        for statement in statements:
            if statement.get("Effect") != "Allow":
                continue
            for key in ("NotAction", "NotResource", "NotPrincipal"):
                if key in statement:
                    findings.add("least-privilege", where, f"{key} grants what is not listed: {statement}")
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            resources = deployment.value(statement.get("Resource", []))
            resources = [resources] if isinstance(resources, str) else resources
            condition = deployment.value(statement.get("Condition"))
            for action in actions:
                service, _, name = action.partition(":")
                if "*" in action or service.lower() != "dynamodb":
                    findings.add("least-privilege", where,
                                 f"{action}: only named DynamoDB actions (an endpoint uses no other service)")
                    continue
                (granted_epoch if condition == EPOCH_ITEMS_ONLY else granted_any).add(name)
                if condition not in (None, EPOCH_ITEMS_ONLY):
                    findings.add("least-privilege", where, f"{action} under an unknown condition {condition}")
            for arn in resources:
                if arn != table_arn:
                    findings.add("least-privilege", where,
                                 f"{', '.join(actions)} on {arn}: only on its table, {table_arn}")
        for name in sorted(granted_any - any_item):
            hint = (" (it may update the EPOCH#<i> items only: a dynamodb:LeadingKeys condition)"
                    if name in epoch_only else "")
            findings.add("least-privilege", where, f"dynamodb:{name} on any item, which {binary} does not "
                         f"send{hint}")
        for name in sorted(granted_epoch - epoch_only - any_item):
            findings.add("least-privilege", where, f"dynamodb:{name} on the epoch items, which {binary} "
                         "does not send")
        for name in sorted(any_item - granted_any):
            findings.add("least-privilege", where, f"dynamodb:{name} is not granted, and {binary} sends it")
        for name in sorted(epoch_only - granted_epoch - granted_any):
            findings.add("least-privilege", where, f"dynamodb:{name} on the EPOCH#<i> items is not granted, "
                         f"and {binary} bumps the store epoch")


def log_retention(deployment: Deployment, findings: Findings) -> None:
    resources = deployment.template.get("Resources", {})
    parameters = deployment.cfn.get("Parameters", {})
    for id, resource, binary in lambda_functions(deployment):
        where = f"{id} [{deployment.label}]"
        properties = resource.get("Properties", {})
        group = (properties.get("LoggingConfig") or {}).get("LogGroup")
        group_id = group.get("Ref") if isinstance(group, dict) else None
        if group_id is None:
            # Without one, Lambda logs to /aws/lambda/<name>, made on first use without retention,
            # unless the stack declares that group.
            name = "/aws/lambda/" + str(deployment.value(properties.get("FunctionName", id)))
            group_id = next((g for g, r in resources.items() if r.get("Type") == "AWS::Logs::LogGroup"
                             and deployment.value(r.get("Properties", {}).get("LogGroupName")) == name), None)
            if group_id is None:
                findings.add("log-retention", where, f"logs to {name}, which Lambda creates without a "
                             "retention: name a log group of the stack in LoggingConfig.LogGroup")
                continue
        log_group = resources.get(group_id)
        if not log_group or log_group.get("Type") != "AWS::Logs::LogGroup":
            findings.add("log-retention", where, f"LoggingConfig.LogGroup {group}: not a log group of the stack")
            continue
        retention = log_group.get("Properties", {}).get("RetentionInDays")
        if retention is None:
            findings.add("log-retention", f"{group_id} [{deployment.label}]",
                         f"no RetentionInDays: {binary}'s logs are kept forever")
            continue
        if isinstance(retention, dict) and "Ref" in retention:
            spec = parameters.get(retention["Ref"], {})
            candidates = [spec.get("Default")] + list(spec.get("AllowedValues", []))
            if not spec.get("AllowedValues"):
                findings.add("log-retention", f"{group_id}", f"RetentionInDays {retention}: a parameter "
                             "without AllowedValues, which CloudFormation may refuse at deploy time")
        else:
            candidates = [deployment.value(retention)]
        for days in candidates:
            if days is not None and int(str(days)) not in RETENTION_DAYS:
                findings.add("log-retention", f"{group_id}", f"RetentionInDays {days} is not a "
                             "retention CloudWatch Logs offers")


def alarm_metrics(alarm: dict):
    properties = alarm.get("Properties", {})
    if "MetricName" in properties:
        yield properties.get("Namespace"), properties["MetricName"], properties.get("Dimensions", [])
    for query in properties.get("Metrics", []):
        metric = (query.get("MetricStat") or {}).get("Metric")
        if metric:
            yield metric.get("Namespace"), metric.get("MetricName"), metric.get("Dimensions", [])


def alarms(cfn: dict, findings: Findings) -> None:
    namespace, names, dimension_sets = emitted_metrics()
    resources = cfn.get("Resources", {})
    apis = {i for i, r in resources.items() if r.get("Type") == "AWS::ApiGatewayV2::Api"}
    api_5xx = fallback = False
    for id, alarm in resources.items():
        if alarm.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        if "AlarmActions" not in alarm.get("Properties", {}):
            findings.add("alarms", id, "no AlarmActions: nobody would be told")
        for metric_namespace, name, dimensions in alarm_metrics(alarm):
            keys = sorted(d.get("Name") for d in dimensions)
            if metric_namespace == namespace:
                if name not in names:
                    findings.add("alarms", id, f"{namespace}/{name}: shared/src/metrics.rs emits no such "
                                 f"metric (it emits {', '.join(sorted(names))})")
                elif keys not in [sorted(s) for s in dimension_sets]:
                    findings.add("alarms", id, f"{namespace}/{name} by {keys}: emitted only by "
                                 f"{dimension_sets}")
                else:
                    fallback = fallback or name == "Fallback"
            if metric_namespace == "AWS/ApiGateway" and name == "5xx":
                api_ids = [d.get("Value") for d in dimensions if d.get("Name") == "ApiId"]
                if any(isinstance(v, dict) and v.get("Ref") in apis for v in api_ids):
                    api_5xx = True
                else:
                    findings.add("alarms", id, f"AWS/ApiGateway 5xx not of this stack's HTTP API: {dimensions}")
    if not api_5xx:
        findings.add("alarms", "Resources", "no alarm on the HTTP API's 5xx (AWS/ApiGateway 5xx by ApiId)")
    if not fallback:
        findings.add("alarms", "Resources", f"no alarm on store fallbacks ({namespace}/Fallback)")


def references(cfn: dict, all_deployments: list[Deployment], findings: Findings) -> None:
    parameters = set(cfn.get("Parameters", {}))
    resources = cfn.get("Resources", {})
    conditions = set(cfn.get("Conditions", {}))

    def depends_on(entry):
        listed = entry.get("DependsOn", [])
        return [listed] if isinstance(listed, str) else listed

    # The whole template: every name exists somewhere, every condition is defined.
    found: list = []
    for section in ("Conditions", "Resources", "Outputs"):
        for id, entry in cfn.get(section, {}).items():
            targets(entry, found, f"{section}.{id}")
            if section != "Conditions" and "Condition" in entry:
                found.append(("Condition", entry["Condition"], None, f"{section}.{id}.Condition"))
            for target in depends_on(entry) if section == "Resources" else []:
                found.append(("DependsOn", target, None, f"{section}.{id}.DependsOn"))
    for kind, name, _, where in found:
        if kind == "Condition":
            if name not in conditions:
                findings.add("conditions", where, f"condition {name} is not defined in Conditions")
        elif where.startswith("Conditions."):
            if kind != "Ref" or name not in parameters | set(PSEUDO_PARAMETERS):
                findings.add("references", where, f"{kind} {name}: Conditions may refer to parameters only")
        elif kind == "Ref" and name not in parameters | set(resources) | set(PSEUDO_PARAMETERS):
            findings.add("references", where, f"Ref {name}: no such parameter, resource or pseudo parameter")
        elif kind in ("GetAtt", "DependsOn") and name not in resources:
            findings.add("references", where, f"{kind} {name}: no such resource")

    # Each deployment: what it refers to is deployed with it.
    for deployment in all_deployments:
        deployed = deployment.template.get("Resources", {})
        for section in ("Resources", "Outputs"):
            for id, entry in deployment.template.get(section, {}).items():
                used: list = []
                targets(entry, used, f"{section}.{id}")
                for target in depends_on(entry) if section == "Resources" else []:
                    used.append(("DependsOn", target, None, f"{section}.{id}.DependsOn"))
                for kind, name, _, where in used:
                    if kind != "Condition" and name in resources and name not in deployed:
                        findings.add("references", f"{where} [{deployment.label}]",
                                     f"{kind} {name}, which its condition {resources[name].get('Condition')} "
                                     "leaves out of this deployment")


def no_cycle(cfn: dict, findings: Findings) -> None:
    """CloudFormation orders resources by their references and refuses a circular one, on the
    whole template: both branches of every Fn::If count."""
    resources = cfn.get("Resources", {})
    edges: dict[str, set[str]] = {}
    for id, resource in resources.items():
        used: list = []
        targets({k: v for k, v in resource.items() if k != "DependsOn"}, used, id)
        listed = resource.get("DependsOn", [])
        names = {name for kind, name, _, _ in used if kind != "Condition"}
        names |= set([listed] if isinstance(listed, str) else listed)
        edges[id] = {n for n in names if n in resources}
    state: dict[str, int] = {}
    stack: list[str] = []
    reported: set[frozenset] = set()

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    findings.add("no-cycle", cycle[0], "circular dependency: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    sys.setrecursionlimit(max(1000, 4 * len(resources)))
    for node in sorted(edges):
        if node not in state:
            visit(node)


def rehearse(source: dict) -> tuple[Findings, dict, list[Deployment]]:
    """All rules on one SAM template: the findings, the CloudFormation, the deployments."""
    findings = Findings()
    try:
        cfn = transform(source)
    except TransformFailed as e:
        findings.add("transform", "template", f"the SAM transform refuses the template: {e}")
        return findings, {}, []
    all_deployments = deployments(cfn)
    known = config_variables()
    rule_functions(cfn, all_deployments, findings)
    references(cfn, all_deployments, findings)
    no_cycle(cfn, findings)
    alarms(cfn, findings)
    for deployment in all_deployments:
        cors_origins(deployment, findings)
        deployment.environments = environment(deployment, known, findings)
        least_privilege(deployment, source, findings)
        log_retention(deployment, findings)
    return findings, cfn, all_deployments


# --------------------------------------------------------------------------------------------
# Proof that every rule can fail: one break per rule, each must be reported by its rule
# --------------------------------------------------------------------------------------------


def function_named(template: dict, binary: str) -> dict:
    return next(r for i, r in template["Resources"].items()
                if r.get("Type") == "AWS::Serverless::Function" and function_binary(i, r) == binary)


def statements(template: dict, binary: str) -> list:
    return function_named(template, binary)["Properties"]["Policies"][0]["Statement"]


def break_rules_with_join(t):
    rule = next(iter(t["Rules"].values()))
    rule["Assertions"][0]["Assert"] = {"Fn::Not": [{"Fn::Equals": [
        {"Fn::Join": [",", {"Ref": "SubnetIds"}]}, ""]}]}


def break_cors(t):
    t["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"] = {
        "AllowOrigins": ["http://localhost:*"], "AllowMethods": ["GET", "POST"]}


def break_environment_unknown(t):
    t["Globals"]["Function"]["Environment"]["Variables"]["SESSION_TTL"] = "3600"


def break_environment_missing(t):
    del t["Globals"]["Function"]["Environment"]["Variables"]["SESSION_TABLE"]


def break_environment_redis(t):
    t["Globals"]["Function"]["Environment"]["Variables"]["REDIS_URL"] = ""


def break_environment_size(t):
    t["Globals"]["Function"]["Environment"]["Variables"]["ADMIN_USER_IDS"] = "user_" + "x" * 4000


def break_environment_need(t):
    del t["Globals"]["Function"]["Environment"]["Variables"]["ADMIN_USER_IDS"]


def break_rules_refuse(t):
    rule = next(iter(t["Rules"].values()))
    rule["Assertions"].append({"Assert": {"Fn::Equals": [{"Ref": "RedisMode"}, "none"]},
                               "AssertDescription": "no cache"})


def break_privilege_wildcard(t):
    statements(t, "session-validate")[0]["Action"] = ["dynamodb:*"]


def break_privilege_extra_action(t):
    statements(t, "session-validate")[0]["Action"].append("dynamodb:DeleteItem")


def break_privilege_epoch_condition(t):
    del statements(t, "session-logout")[1]["Condition"]


def break_privilege_missing_action(t):
    statements(t, "session-refresh")[0]["Action"].remove("dynamodb:UpdateItem")


def break_privilege_other_service(t):
    statements(t, "cache-get").append({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"})


def break_privilege_managed_policy(t):
    function_named(t, "cache-get")["Properties"]["Policies"].append(
        "arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess")


def break_privilege_resource(t):
    statements(t, "session-stats")[0]["Resource"] = "*"


def break_retention_missing(t):
    del t["Resources"]["SessionValidateLogs"]["Properties"]["RetentionInDays"]


def break_retention_no_group(t):
    del function_named(t, "session-refresh")["Properties"]["LoggingConfig"]
    del t["Resources"]["SessionRefreshLogs"]


def break_alarms_removed(t):
    for id in [i for i, r in t["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]:
        del t["Resources"][id]


def break_alarms_unknown_metric(t):
    alarm = next(r for r in t["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
                 and r["Properties"].get("MetricName") == "Fallback")
    alarm["Properties"]["MetricName"] = "Fallbacks"


def break_references_missing(t):
    t["Outputs"]["Broken"] = {"Value": {"Fn::GetAtt": ["NoSuchCache", "Endpoint.Address"]}}


def break_references_conditional(t):
    t["Outputs"]["RedisEndpoint"]["Value"] = {"Fn::Sub": "${RedisCache.Endpoint.Address}"}


def break_references_sub(t):
    t["Globals"]["Function"]["Environment"]["Variables"]["CLERK_ISSUER"] = {"Fn::Sub": "${ClerkIssuerUrl}"}


def break_conditions(t):
    t["Resources"]["StoreFallbackAlarm"]["Condition"] = "HasAlarmTopics"


def break_cycle(t):
    t["Resources"]["FunctionSecurityGroup"]["DependsOn"] = "RedisCache"


def break_transform(t):
    function_named(t, "cache-get")["Properties"]["Events"]["Api"]["Properties"]["ApiId"] = {"Ref": "NoApi"}


BREAKS = [
    ("rules", "an Fn::Join in a Rules assertion", break_rules_with_join),
    ("rules", "a rule that refuses RedisMode=serverless even with a network", break_rules_refuse),
    ("cors-origins", "a CorsConfiguration allowing http://localhost:*", break_cors),
    ("environment", "a variable config.rs does not read (SESSION_TTL)", break_environment_unknown),
    ("environment", "SESSION_TABLE left out", break_environment_missing),
    ("environment", "ADMIN_USER_IDS left out, which session-stats reads", break_environment_need),
    ("environment", "REDIS_URL empty beside a cache", break_environment_redis),
    ("environment", "an environment over Lambda's 4 KB", break_environment_size),
    ("least-privilege", "dynamodb:* for session-validate", break_privilege_wildcard),
    ("least-privilege", "DeleteItem for session-validate", break_privilege_extra_action),
    ("least-privilege", "logout's UpdateItem without its LeadingKeys condition",
     break_privilege_epoch_condition),
    ("least-privilege", "refresh without the UpdateItem it sends", break_privilege_missing_action),
    ("least-privilege", "s3:GetObject on * for cache-get", break_privilege_other_service),
    ("least-privilege", "AmazonDynamoDBFullAccess attached to cache-get", break_privilege_managed_policy),
    ("least-privilege", "session-stats on Resource *", break_privilege_resource),
    ("log-retention", "a log group without RetentionInDays", break_retention_missing),
    ("log-retention", "a function logging to a group Lambda would create", break_retention_no_group),
    ("alarms", "no alarm at all", break_alarms_removed),
    ("alarms", "an alarm on an EMF metric the code does not emit", break_alarms_unknown_metric),
    ("references", "an output reading a resource that does not exist", break_references_missing),
    ("references", "the cache's endpoint read outside UseRedis", break_references_conditional),
    ("references", "a ${} of Fn::Sub naming no parameter", break_references_sub),
    ("conditions", "a resource under an undefined condition", break_conditions),
    ("no-cycle", "a DependsOn that closes a loop through the security groups", break_cycle),
    ("transform", "a route on an API that does not exist", break_transform),
]


def prove(source: dict) -> int:
    findings, _, _ = rehearse(source)
    if findings.items:
        print("the template itself has findings; fix them before proving the rules:")
        report(findings, sys.stdout)
        return 1
    failed = 0
    for rule in sorted(set(RULES) - {rule for rule, _, _ in BREAKS}):
        failed += 1
        print(f"  MISSED  {rule:<16} no break proves this rule can fail")
    for rule, what, apply in BREAKS:
        broken = copy.deepcopy(source)
        apply(broken)
        findings, _, _ = rehearse(broken)
        mine = [f for f in findings.items if f[0] == rule]
        if mine:
            _, where, message = mine[0]
            print(f"  caught  {rule:<16} {what}\n          {where}: {message}")
        else:
            failed += 1
            got = ", ".join(sorted(findings.rules())) or "nothing"
            print(f"  MISSED  {rule:<16} {what} (reported: {got})")
    print(f"{len(BREAKS) - failed} of {len(BREAKS)} breaks caught by their rule")
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def report(findings: Findings, out) -> None:
    for rule, where, message in findings.items:
        print(f"  FAIL  {rule:<16} {where}: {message}", file=out)


def main(argv: list[str]) -> int:
    mode = "text"
    args = [a for a in argv if not a.startswith("--")]
    for flag in [a for a in argv if a.startswith("--")]:
        if flag in ("--json", "--prove"):
            mode = flag[2:]
        else:
            print(__doc__, file=sys.stderr)
            return 2
    path = Path(args[0]) if args else ROOT / "template.yaml"
    started = time.monotonic()
    source = load(path)
    if mode == "prove":
        print(f"deploy rehearsal: proving each rule can fail on broken copies of {path.name}")
        code = prove(source)
        print(f"({time.monotonic() - started:.1f} s)")
        return code
    findings, _, all_deployments = rehearse(source)
    if mode == "json":
        json.dump({
            "findings": [{"rule": r, "where": w, "message": m} for r, w, m in findings.items],
            "deployments": [{"parameters": d.varied, "environments": d.environments}
                            for d in all_deployments],
        }, sys.stdout, indent=1)
        print()
        return 1 if findings.items else 0
    import samtranslator

    varied = ", ".join(all_deployments[0].varied) if all_deployments else "none"
    print(f"deploy rehearsal: {path.name} through the SAM transform (samtranslator "
          f"{samtranslator.__version__}, offline); {len(RULES)} rules on {len(all_deployments)} "
          f"deployments (each combination of {varied})")
    report(findings, sys.stdout)
    print(f"{'no finding' if not findings.items else f'{len(findings.items)} finding(s)'} "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if findings.items else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
