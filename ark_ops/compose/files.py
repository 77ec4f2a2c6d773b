"""DEPLOY_02: the Docker Compose stack's files, checked without an engine.

* `compose/ark.env` is generated from the env schema (ark_runtime/env.schema.yaml, the same
  declaration the hosts' env files come from) and holds no secret;
* secrets are one file per variable under build/compose/secrets/, made once, mode 0400, owned
  by the image's uid (compose mounts them as they are on the host);
* `docker-compose.yml` is checked against the Compose Specification's JSON schema (vendored in
  docs/schemas/) and against what ARK asks of every service (health, limits, non-root, ...).

The engine side (dockerd, images, up/down) is in ark_ops/compose/engine.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ark_ops.errors import OpsError
from ark_ops.paths import REPO_ROOT
from ark_runtime import pipeline
from ark_runtime.settings import check_values

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_FILE = REPO_ROOT / "compose" / "ark.env"
ENV_SCHEMA = REPO_ROOT / "ark_runtime" / "env.schema.yaml"
SPEC_SCHEMA = REPO_ROOT / "docs" / "schemas" / "compose-spec.json"
SECRETS_DIR = REPO_ROOT / "build" / "compose" / "secrets"
DOCKER_COMPOSE = "/usr/bin/docker-compose"  # Debian's; /usr/local/bin may shadow docker itself
PROJECT = "ark"
IMAGE_UID = 10001  # the Dockerfile's ARK_UID: the container user that reads the secrets

# The env file carries these domains; the others are secrets or API-only credentials.
ENV_DOMAINS = ("infrastructure", "features")
# What differs from a host: Redis and the API are other containers, paths are the volumes.
CONTAINER_VALUES = {
    "ARK_ENVIRONMENT": "production",
    "ARK_REDIS_HOST": "redis",
    "ARK_REDIS_PORT": "6379",
    "ARK_STATE_DIR": "/var/lib/ark",
    "ARK_LOG_DIR": "/var/log/ark",
    "ARK_RUN_DIR": "/run/ark",
    "ARK_FEED": "sample",
}
# Compose secrets: variable -> the secret's name in docker-compose.yml.
SECRETS = {"ARK_REDIS_PASSWORD": "redis_password", "ARK_API_SECRET": "api_secret"}
ARK_SERVICES = pipeline.COMPOSE_SERVICES
_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class ComposeError(OpsError):
    """A compose file, env file or secret that ARK refuses; the message names each field."""

    exit_code = 65  # ExitCode.DATAERR


@cache
def env_schema() -> dict[str, Any]:
    return yaml.safe_load(ENV_SCHEMA.read_text())


def render_env_file() -> str:
    """compose/ark.env: the container values set, every other variable of the env file's
    domains listed commented with its default, and where each secret comes from."""
    variables = env_schema()["variables"]
    out = ["# GENERATED from ark_runtime/env.schema.yaml by `invoke compose.env`; keep it in",
           "# step with the schema (tests/unit/test_compose_file.py compares). No secret here:",
           "# the sensitive variables are compose secrets (build/compose/secrets/NAME)."]
    for domain in ENV_DOMAINS:
        out += ["", f"# --- {domain}: {env_schema()['domains'][domain]}"]
        for name, spec in variables.items():
            if spec["domain"] != domain:
                continue
            if spec["sensitive"]:
                where = f"compose secret {SECRETS[name]}" if name in SECRETS else "not used here"
                out.append(f"# {name}: sensitive, {where}")
            elif name in CONTAINER_VALUES:
                out.append(f"{name}={CONTAINER_VALUES[name]}")
            elif spec.get("default") is not None:
                out.append(f"# {name}={_env_text(spec['default'])}")
    return "\n".join(out) + "\n"


def _env_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_env_file(path: Path = ENV_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_env_file())
    return path


def parse_env_text(text: str, source: str = "env file") -> dict[str, str]:
    """NAME=VALUE lines (comments and blank lines skipped), as compose reads them."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if not match:
            raise ComposeError(f"{source} line {number}: not NAME=VALUE")
        values[match[1]] = match[2]
    return values


def env_problems(values: dict[str, str]) -> list[str]:
    """What is wrong with an env file's values, each naming its variable and never a secret."""
    variables = env_schema()["variables"]
    problems = []
    for name in values:
        spec = variables.get(name)
        if spec is None and not name.startswith("ARK_FEATURE_"):
            problems.append(f"{name}: not declared in ark_runtime/env.schema.yaml")
        elif spec and spec["sensitive"]:
            problems.append(f"{name}: is sensitive; give it as a compose secret, "
                            "never in the env file")
        elif spec and spec["domain"] not in ENV_DOMAINS:
            problems.append(f"{name}: domain {spec['domain']} does not go to every service")
    safe = {k: v for k, v in values.items() if not (variables.get(k) or {}).get("sensitive")}
    problems += [f"{name}: {why}" for name, why in check_values(safe)]
    return problems


def check_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    values = parse_env_text(path.read_text(), source=str(path))
    problems = env_problems(values)
    if problems:
        raise ComposeError(f"{path}: " + "; ".join(problems))
    return values


def ensure_secrets(directory: Path = SECRETS_DIR, uid: int = IMAGE_UID) -> dict[str, Path]:
    """One file per secret, made once with a random value (mode 0400, owned by the image's
    user so the container can read it); an existing file is kept and checked."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    paths = {}
    for name in SECRETS:
        path = directory / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))  # 43 characters: over every minimum
        if os.geteuid() == 0:
            os.chown(path, uid, uid)
        _check_secret(path, name)
        paths[name] = path
    return paths


def _check_secret(path: Path, name: str) -> None:
    if path.stat().st_mode & 0o077:
        raise ComposeError(f"{path}: {name} is readable by group or others; chmod 0400 it")
    problems = check_values({name: path.read_text().strip()})
    if problems:  # check_values never quotes a sensitive value
        raise ComposeError(f"{path}: " + "; ".join(f"{n}: {why}" for n, why in problems))


@cache
def spec_validator() -> jsonschema.Draft201909Validator:
    return jsonschema.Draft201909Validator(json.loads(SPEC_SCHEMA.read_text()))


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def schema_problems(doc: Any) -> list[str]:
    """The Compose Specification's verdict, each problem prefixed by where it is."""
    errors = sorted(spec_validator().iter_errors(doc), key=lambda e: list(map(str, e.path)))
    return [f"{_where(e.absolute_path)}: {e.message}" for e in errors]


def policy_problems(doc: dict[str, Any]) -> list[str]:
    """What ARK asks of its stack beyond the schema (DEPLOY_02's list)."""
    services = doc.get("services") or {}
    problems = [f"services.{name}: missing" for name in ARK_SERVICES if name not in services]
    for name in ARK_SERVICES:
        problems += _service_problems(name, services.get(name))
    for net in ("ark",):
        if not ((doc.get("networks") or {}).get(net) or {}).get("internal"):
            problems.append(f"networks.{net}.internal: must be true (the isolated network)")
    return problems


def _service_problems(name: str, svc: Any) -> list[str]:
    if not isinstance(svc, dict):
        return []
    where = f"services.{name}"
    problems = [f"{where}.{key}: missing" for key in ("healthcheck", "cpus", "mem_limit",
                                                       "volumes", "networks", "user")
                if not svc.get(key)]
    if str(svc.get("user", "")).split(":")[0] in ("0", "root"):
        problems.append(f"{where}.user: must not be root")
    if svc.get("read_only") is not True:
        problems.append(f"{where}.read_only: must be true")
    if "ark" not in _entries(svc.get("networks")):
        problems.append(f"{where}.networks: must include the isolated network ark")
    for volume in _entries(svc.get("volumes")):
        source = str(volume).split(":")[0]
        if source.startswith((".", "/", "~")):
            problems.append(f"{where}.volumes: {source} is a host path; use a named volume")
    for var in (str(e).split("=")[0] for e in _entries(svc.get("environment"))):
        if (env_schema()["variables"].get(var) or {}).get("sensitive"):
            problems.append(f"{where}.environment.{var}: sensitive; use a compose secret")
    return problems


def _entries(value: Any) -> list[Any]:
    """A list or mapping field's entries (keys of a mapping); nothing for a wrong type, which
    the schema reports by itself."""
    return list(value) if isinstance(value, list | dict) else []


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ComposeError(f"{path}: not YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise ComposeError(f"{path}: not a mapping of services, networks, volumes")
    return doc


def check_compose_file(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    doc = load_compose(path)
    problems = schema_problems(doc) + policy_problems(doc)
    if problems:
        raise ComposeError(f"{path}: " + "; ".join(problems))
    return doc


def docker_compose_config(path: Path = COMPOSE_FILE) -> str:
    """`docker-compose config`: the engine's own parser and interpolation on the file."""
    if not Path(DOCKER_COMPOSE).exists():
        raise ComposeError(f"{DOCKER_COMPOSE} is missing: apt-get install docker-compose")
    proc = subprocess.run([DOCKER_COMPOSE, "-f", str(path), "-p", PROJECT, "config"],
                          capture_output=True, text=True, timeout=60, cwd=path.parent,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ComposeError(f"docker-compose config refused {path}: {proc.stderr.strip()}")
    return proc.stdout
