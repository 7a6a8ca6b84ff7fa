"""cloudbuild.yaml, the release triggers and the Dockerfile keep the deploy contract."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.infra import contract, tfmodel

REPO = tfmodel.REPO
BUILD = tfmodel.load_module(tfmodel.TERRAFORM / "modules" / "pipeline")

# Cloud Build's own substitutions; any other $NAME must be declared, and shell variables written $$NAME.
BUILTIN = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "COMMIT_SHA",
    "SHORT_SHA",
    "REVISION_ID",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "TRIGGER_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
}


def _scripts(cb: dict[str, Any]) -> list[str]:
    return ["\n".join(str(a) for a in step.get("args", [])) + str(step.get("script", "")) for step in cb["steps"]]


def check_cloudbuild(cb: dict[str, Any]) -> list[str]:
    p: list[str] = []
    scripts = _scripts(cb)
    everything = "\n".join(scripts)
    for cmd in ("make lint", "make test"):
        if not any(re.search(rf"^\s*{cmd}\s*$", s, re.M) for s in scripts):
            p.append(f"no step runs `{cmd}`")
    if (
        not re.search(r'docker build\b.*"\$_IMAGE:\$COMMIT_SHA"', everything)
        or 'docker push "$_IMAGE:$COMMIT_SHA"' not in everything
    ):
        p.append("the image must be built and pushed as $_IMAGE:$COMMIT_SHA")
    if "image_summary.digest" not in everything or '"$_IMAGE@$$DIGEST" > /workspace/image.txt' not in everything:
        p.append("the pushed image's digest must be resolved into /workspace/image.txt as IMAGE@DIGEST")
    deploy = [s for s in scripts if "terraform" in s and " apply " in s]
    if len(deploy) != 1:
        p.append("exactly one step must deploy with terraform apply")
    else:
        d = deploy[0]
        if 'IMAGE="$$(cat /workspace/image.txt)"' not in d or '-var="image=$$IMAGE"' not in d:
            p.append("terraform apply must take -var image=<the resolved digest>")
        if "terraform/envs/$_ENV" not in d:
            p.append("the deploy must apply the root of $_ENV")
    if re.search(r":latest\b", everything):
        p.append("nothing may be deployed by the :latest tag")
    if re.search(r"gcloud run deploy(?![^\n]*--image[= ][^\n]*@)", everything):
        p.append("gcloud run deploy must name the image by digest")
    declared = set(cb.get("substitutions", {}))
    for name in sorted(set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", everything))):
        if name not in BUILTIN and name not in declared:
            p.append(f"${name} is neither a Cloud Build substitution nor escaped as $${name}")
    if "_ENV" not in declared or cb["substitutions"]["_ENV"] != "dev":
        p.append("_ENV must be a substitution defaulting to dev")
    return p


CLOUDBUILD = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())


def test_cloudbuild_tests_builds_and_deploys_by_digest() -> None:
    assert check_cloudbuild(CLOUDBUILD) == []


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("make test", "echo tests skipped", "make test"),
        ('-var="image=$$IMAGE"', '-var="image=$_IMAGE:latest"', "latest"),
        ('-var="image=$$IMAGE"', '-var="image=$IMAGE"', "$IMAGE is neither"),
        ("image_summary.digest", "image_summary.fully_qualified_digest_x", "digest must be resolved"),
    ],
)
def test_the_cloudbuild_check_fails_on_a_broken_pipeline(old: str, new: str, expect: str) -> None:
    text = (REPO / "cloudbuild.yaml").read_text()
    assert old in text
    problems = check_cloudbuild(yaml.safe_load(text.replace(old, new)))
    assert any(expect in p for p in problems), problems


def check_triggers(m: tfmodel.Module) -> list[str]:
    p: list[str] = []
    triggers = m.local("triggers")
    dev, stg, prod = (triggers.get(e, {}) for e in ("dev", "stg", "prod"))
    if dev.get("branch") != "^main$" or dev.get("approval") is not False or dev.get("tag") is not None:
        p.append("dev deploys on every push to main, without approval")
    for name, t in (("stg", stg), ("prod", prod)):
        if t.get("tag") != "local.release_tag" or t.get("branch") is not None or t.get("approval") is not True:
            p.append(f"{name} deploys on a release tag only after approval")
    res = m.one("google_cloudbuild_trigger", "deploy")
    if res.attr("filename") != "cloudbuild.yaml":
        p.append("the triggers run cloudbuild.yaml")
    approval = res.blocks("approval_config")
    if not approval or approval[0].attr("approval_required") != "each.value.approval":
        p.append("approval_config { approval_required } must follow each trigger's approval flag")
    if res.attr("substitutions", {}).get("_ENV") != "each.key":
        p.append("each trigger passes its env as _ENV")
    push = res.block("repository_event_config").block("push")
    if push.attr("tag") != "each.value.tag" or push.attr("branch") != "each.value.branch":
        p.append("the push filter follows each trigger's branch or tag")
    return p


def test_release_triggers_need_approval_for_stg_and_prod() -> None:
    assert check_triggers(BUILD) == []
    assert re.fullmatch(BUILD.local("release_tag").replace("\\\\", "\\"), "v1.2.3")


def test_the_trigger_check_fails_without_approval() -> None:
    d = tfmodel.TERRAFORM / "modules" / "pipeline"
    texts = {p.name: p.read_text() for p in d.glob("*.tf")}
    texts["main.tf"] = texts["main.tf"].replace(
        "tag = local.release_tag, approval = true", "tag = local.release_tag, approval = false", 1
    )
    assert any("only after approval" in p for p in check_triggers(tfmodel.load_module(d, texts)))


# --- Dockerfile -------------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def check_dockerfile(text: str) -> list[str]:
    p: list[str] = []
    ins = instructions(text)
    froms = [a for i, a in ins if i == "FROM"]
    if len(froms) != 1 or not re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*(@sha256:[0-9a-f]{64})?", froms[0]):
        p.append(f"base must be a slim Python 3.11 image, is {froms}")
    first = lambda pred: next((k for k, x in enumerate(ins) if pred(x)), None)  # noqa: E731
    deps_copy = first(lambda x: x[0] == "COPY" and x[1].split()[0] == "pyproject.toml")
    deps_install = first(lambda x: x[0] == "RUN" and "pip install" in x[1])
    source_copy = first(lambda x: x[0] == "COPY" and x[1].split()[0] not in ("pyproject.toml",))
    if None in (deps_copy, deps_install, source_copy) or not deps_copy < deps_install < source_copy:  # type: ignore[operator]
        p.append("copy pyproject.toml and install the dependencies before copying the source")
    users = [a for i, a in ins if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        p.append("the image must run as a non-root USER")
    env = " ".join(a for i, a in ins if i in ("ENV", "ARG"))
    if "EMULATOR" in env.upper():
        p.append("no emulator variable may be baked into the image")
    if not re.search(r"\bPYTHONUNBUFFERED=1\b", env):
        p.append("PYTHONUNBUFFERED=1 must be set")
    cmds = [a for i, a in ins if i == "CMD"]
    if not cmds or json.loads(cmds[-1]) != contract.SERVICES["api"]:
        p.append("the default CMD must be the API")
    if any(i == "ENTRYPOINT" for i, _ in ins):
        p.append("no ENTRYPOINT: each service sets its command")
    for i, a in ins:
        if i == "COPY" and not a.startswith("--"):
            src = a.split()[0]
            if src != "." and not (REPO / src).exists():
                p.append(f"COPY {src}: no such path in the repository")
    return p


DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_the_dockerfile_is_slim_non_root_and_layered_for_the_cache() -> None:
    assert check_dockerfile(DOCKERFILE) == []


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("FROM python:3.11-slim", "FROM python:3.11", "slim"),
        ("USER 10001:10001", "USER root", "non-root"),
        ("COPY pyproject.toml ./\n", "COPY . ./\n", "before copying the source"),
        ("PYTHONPATH=/app", "PYTHONPATH=/app FIRESTORE_EMULATOR_HOST=localhost:8080", "emulator"),
    ],
)
def test_the_dockerfile_check_fails_on_a_broken_dockerfile(old: str, new: str, expect: str) -> None:
    assert old in DOCKERFILE
    problems = check_dockerfile(DOCKERFILE.replace(old, new))
    assert any(expect in p for p in problems), problems


def test_the_build_context_leaves_out_what_the_image_does_not_need() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".venv-*", "tests", "terraform", "bench", "docs"} <= ignored
    assert not {"infra", "jobrelay", "jobs", "functions", "services", "pyproject.toml"} & ignored


def test_the_image_and_the_readmes_team_image_name_the_job_modules_setting() -> None:
    from jobrelay.process_settings import RuntimeSettings

    variable = f"{RuntimeSettings.model_config['env_prefix']}JOB_MODULES"
    assert "job_modules" in RuntimeSettings.model_fields
    ins = instructions(DOCKERFILE)
    assert ("ARG", "JOB_MODULES=jobs") in ins and ("ENV", f"{variable}=${{JOB_MODULES}}") in ins
    readme = (REPO / "README.md").read_text()
    (team,) = re.findall(r"```dockerfile\n(.*?)```", readme, flags=re.DOTALL)
    team_ins = instructions(team)
    assert [i for i, _ in team_ins] == ["FROM", "COPY", "ENV"]
    assert team_ins[2][1].startswith(f"{variable}=jobs,")
