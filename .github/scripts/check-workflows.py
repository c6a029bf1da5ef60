#!/usr/bin/env python3
"""Checks .github/workflows/*.yml without network access (actionlint covers more in CI):

- valid YAML with `on` and `jobs`; every job has runs-on and steps; each step has exactly one of
  `uses` / `run`
- every `uses:` of a remote action is pinned to a full 40-hex commit SHA with a `# <version>`
  comment on the same line (docker:// images must carry an @sha256 digest)
- `${{ ... }}` expressions are balanced and only reference known contexts
- every `run:` block is valid bash (`bash -n`) and, when shellcheck is installed, passes it
  (expressions replaced by placeholders first)

Usage: check-workflows.py [WORKFLOW...]   (default: .github/workflows/*.yml)
Needs PyYAML.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

SHA_PIN = re.compile(r"^\s*-?\s*uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*\S+")
EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
CONTEXTS = {"github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy",
            "matrix", "needs", "inputs"}
failures = []


def fail(path, msg):
    failures.append("%s: %s" % (path, msg))


def check_expressions(path, text):
    if text.count("${{") != len(EXPR.findall(text)):
        fail(path, "unbalanced ${{ }} expression")
    for expr in EXPR.findall(text):
        for word in re.findall(r"(?<![\w.'-])([a-z_]+)\.", expr):
            if word not in CONTEXTS:
                fail(path, "unknown context %r in ${{%s}}" % (word, expr))


def check_run(path, where, script, shell):
    if shell not in (None, "bash"):
        return
    body = EXPR.sub("PLACEHOLDER", script)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        # GitHub runs `bash -e {0}` (with pipefail when shell: bash is explicit).
        f.write("#!/usr/bin/env bash\nset -eo pipefail\n" + body)
        name = f.name
    try:
        r = subprocess.run(["bash", "-n", name], capture_output=True, text=True)
        if r.returncode:
            fail(path, "%s: bash -n: %s" % (where, r.stderr.strip()))
        if shutil.which("shellcheck"):
            r = subprocess.run(["shellcheck", "-s", "bash", "-S", "warning", "-e", "SC2034", name],
                               capture_output=True, text=True)
            if r.returncode:
                fail(path, "%s: shellcheck:\n%s" % (where, r.stdout.strip()))
    finally:
        os.unlink(name)


def check_workflow(path):
    text = open(path).read()
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*-?\s*uses:\s*(\S+)", line)
        if not m:
            continue
        ref = m.group(1)
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            if "@sha256:" not in ref:
                fail(path, "line %d: docker image not pinned by digest: %s" % (n, ref))
            continue
        if not SHA_PIN.match(line):
            fail(path, "line %d: action not pinned to a full commit SHA with a version comment: %s"
                 % (n, line.strip()))
    check_expressions(path, text)

    doc = yaml.safe_load(text)
    # PyYAML reads the key `on` as True (YAML 1.1).
    if not isinstance(doc, dict) or not ({"on", True} & set(doc)) or "jobs" not in doc:
        fail(path, "not a workflow (needs on: and jobs:)")
        return
    for job_id, job in doc["jobs"].items():
        if "runs-on" not in job:
            fail(path, "job %s has no runs-on" % job_id)
        steps = job.get("steps") or []
        if not steps:
            fail(path, "job %s has no steps" % job_id)
        shell = (job.get("defaults") or {}).get("run", {}).get("shell")
        for i, step in enumerate(steps):
            where = "job %s step %d (%s)" % (job_id, i + 1, step.get("name") or step.get("uses"))
            if ("uses" in step) == ("run" in step):
                fail(path, "%s: needs exactly one of uses/run" % where)
            if "run" in step:
                check_run(path, where, step["run"], step.get("shell", shell))


def main():
    paths = sys.argv[1:] or sorted(glob.glob(".github/workflows/*.yml") + glob.glob(".github/workflows/*.yaml"))
    if not paths:
        sys.exit("no workflows found")
    for p in paths:
        check_workflow(p)
    for f in failures:
        print("FAIL " + f)
    print("workflows: %d checked, %d problem(s)%s" % (
        len(paths), len(failures), "" if shutil.which("shellcheck") else " (shellcheck not installed)"))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
